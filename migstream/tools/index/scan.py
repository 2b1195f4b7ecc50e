"""Scanning a migration stream into the index's rows: ``StreamIndex``, the model behind the TUI (no Textual here).

``StreamIndex`` opens a stream and ``scan()`` (a generator the TUI drives from a
worker thread, as toolong does for log files) decodes it with ``StreamDecoder``
and fills columns of numpy arrays, one entry per *row*: a RAM record (page runs
are expanded), a section header, a command, a device section...  Scanning yields
a ``ScanProgress`` every ``budget`` seconds, so a front end can show the first
rows of a 1 GiB stream while the rest is still being indexed.

Memory: about 21 bytes per row (offset, row kind, flags, block, page), plus page
map checkpoints of one byte per guest page every ``K = max(65536, guest pages)``
rows, i.e. at most one more byte per row.  A 1 GiB stream of 4 KiB pages has
262,144 rows: 5.5 MB of columns and 0.8 MB of checkpoints.  Nothing is kept of
the stream's bytes: a record's details are read back on demand with ``os.pread``.

Sources that cannot be mapped (gzip/xz/zstd files, pipes) are spooled: each
decompressed chunk is appended to an anonymous temporary file before the decoder
sees it, and reads go to that file.  The spool costs disk space equal to the
decompressed stream; plain files are read in place.

"Page map as of row N": the scan keeps one state byte per page (``PageKind``:
how the page was last sent) and saves a copy every K rows (pagestate.py).
``page_states(N)`` copies the checkpoint at or before N and replays the rows in
between with numpy (at most K rows), so any cursor position costs one copy and one
vectorised pass.  Reading a row back from the stream is readback.py's job.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator

import numpy as np

from ...containers.qcow2 import VmStateReader
from ...containers.sources import StreamSource
from ...containers.stream import open_decoder
from ...errors import MigstreamError
from ...events import NEED_DATA
from ...events import BlockRecord
from ...events import CommandEvent
from ...events import Configuration
from ...events import DeviceState
from ...events import DirtyBitmapRecord
from ...events import EndOfStream
from ...events import FileHeader
from ...events import MappedRamBlock
from ...events import MultifdPacket
from ...events import PackageEnd
from ...events import PageRecord
from ...events import PageRun
from ...events import RamBlockList
from ...events import RamMarker
from ...events import SectionEnd
from ...events import SectionStart
from ...events import Undecoded
from ...events import VmDescription
from ...wire.grammar import RAM_CONTINUE
from ...wire.grammar import RAM_PAGE
from ...wire.grammar import RAM_ZERO
from ...wire.grammar import RamFlag
from ..vocabulary import PageKind
from .pagestate import MAX_MAPPED_PAGES
from .pagestate import MULTIFD_ROW
from .pagestate import STATE_OF_FLAGS
from .pagestate import PageStateHistory
from .readback import RecordReadBack
from .rows import NO_BLOCK
from .rows import BlockInfo
from .rows import Column
from .rows import MultifdPacketInfo
from .rows import RowKind
from .rows import Rows
from .rows import ScanProgress
from .rows import SectionInfo


class StreamIndex(RecordReadBack):
    """The rows of a stream and the page state of its RAM blocks, built by ``scan()``."""

    def __init__(
        self,
        path: str,
        *,
        page_size: int | None = None,
        checkpoint_rows: int | None = None,
        channels=(),
        allow_hook: bool = False,
    ) -> None:
        self.path = path
        self._packet_readers: dict = {}  # channel file name -> multifd.PacketReader
        self.packets: list[tuple[int, int, MultifdPacketInfo]] = []  # (first row, rows, packet)
        self._packet_rows = np.zeros(0, np.int64)
        self._last_marker = 0
        self._source = StreamSource(path)
        try:
            # Not a stream at all: fail before spooling anything.
            self._decoder = open_decoder(self._source, page_size=page_size, allow_hook=allow_hook)
        except BaseException:
            self._source.close()
            raise
        # multifd channel files: these, else a capture directory's own
        self.channels = [os.fspath(c) for c in channels] or [os.fspath(c) for c in self._source.channel_paths]
        self.size = self._source.size  # None until a spooled source is complete
        # A qcow2 snapshot's state is read back through its own L1 table (its own reader:
        # the scan thread uses the source's).
        state = self._source.seekable_file
        self._state_reader = state.reopen() if isinstance(state, VmStateReader) else None
        if self._state_reader is not None:
            self._fd = -1
            self._spool = None
        # A packet capture's stream is not at file offsets of its file: spool it like a pipe.
        elif self._source.seekable_file is not None and self._source.packet_capture is None:
            self._fd = os.open(self._source.path, os.O_RDONLY)  # a capture directory's main channel file
            self._spool = None
            if self._source.save_image is not None and not self._source.file_offsets:
                # An uncompressed save image: the stream starts after libvirt's header
                # and XML (a sparse one's decoder counts file offsets already).
                self._read_base = self._source.stream_offset
        else:
            self._spool = tempfile.TemporaryFile(prefix="migstream-spool-")
            self._fd = self._spool.fileno()
        self.spooled = self._spool is not None
        self._lock = threading.Lock()
        self._cancel = threading.Event()

        self.count = 0  # rows readers can see
        self._next_row = 0  # rows added, committed or not
        self._pending: list[tuple] = []
        self._offset = Column(np.int64)
        self._kind = Column(np.uint8)
        self._flags = Column(np.uint16)
        self._block = Column(np.int16)
        self._page = Column(np.uint64)

        self.version: int | None = None
        self.configuration: Configuration | None = None
        self.page_size: int | None = page_size
        self.page_size_source: str | None = None
        self.blocks: list[BlockInfo] = []
        self._block_by_name: dict[str, int] = {}
        self.sections: list[SectionInfo] = []
        self._section_rows: list[int] = []
        self._section_starts = np.zeros(0, np.int64)
        self.ram_sections: list[int] = []  # indexes into sections
        self.commands: dict[str, int] = {}
        self.device_sections = 0
        self.has_description = False
        self.eof = False
        self.undecoded: str | None = None
        self.error: MigstreamError | None = None  # a StreamError has its offset
        self.complete = False
        self.bytes_done = 0
        self.ram_complete = False

        self._mapped: list[MappedRamBlock] = []
        self.page_history = PageStateHistory(checkpoint_rows)
        self.warnings: list[tuple[int, str]] = []

    # --- scanning ----------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()

    def scan(self, budget: float = 0.1, first_budget: float = 0.02) -> Iterator[ScanProgress]:
        """Index the whole stream, yielding progress after ``first_budget`` seconds,
        then every ``budget`` seconds and at the end.  Stops early, incomplete,
        after ``cancel()``."""
        dec = self._decoder
        deadline = time.monotonic() + first_budget
        try:
            events = self._events()
            if self.channels:
                from ...containers.multifd import with_channels

                events = with_channels(events, self.channels, dec)
            for ev in events:
                self._add(ev)
                if time.monotonic() >= deadline:
                    self._flush()
                    self.bytes_done = dec.offset
                    yield self.progress()
                    deadline = time.monotonic() + budget
                if self._cancel.is_set():
                    return
        except MigstreamError as exc:  # StreamError (with its offset), unreadable input
            self.error = exc
        finally:
            self._source.close()
        self.bytes_done = dec.offset
        if self.size is None:
            self.size = dec.offset
        self.page_size = dec.page_size
        self.page_size_source = dec.page_size_source
        self.ram_complete = dec.ram_complete
        self.warnings = list(dec.warnings)
        self._flush()
        self._checkpoint()
        self.complete = True
        yield self.progress()

    def _events(self):
        """The decoder's events; spooled sources are written out before decoding."""
        dec = self._decoder
        spool = self._spool
        for chunk in self._source.chunks():
            if spool is not None:
                spool.write(chunk)
                spool.flush()
            dec.feed(chunk)
            while (ev := dec.next_event()) is not NEED_DATA:
                if ev is None:
                    return
                yield ev
        dec.feed(b"")
        while (ev := dec.next_event()) is not None and ev is not NEED_DATA:
            yield ev

    def progress(self) -> ScanProgress:
        return ScanProgress(self.bytes_done, self.size, self.count, self.complete)

    def _append(self, offsets, kind, flags, block, page) -> None:
        self._flush()
        n = len(offsets)
        at = self.count
        with self._lock:
            self._offset.put(at, offsets)
            self._kind.put(at, np.full(n, kind, np.uint8) if np.isscalar(kind) else kind)
            self._flags.put(at, np.full(n, flags, np.uint16) if np.isscalar(flags) else flags)
            self._block.put(at, np.full(n, block, np.int16) if np.isscalar(block) else block)
            self._page.put(at, np.full(n, page, np.uint64) if np.isscalar(page) else page)
            self.count = at + n
        self._next_row = self.count

    def _row(self, offset: int, kind: RowKind, flags: int = 0, block: int = NO_BLOCK, page: int = 0) -> None:
        # Single rows wait in a list and are committed in batches (numpy calls per
        # row would cost more than decoding the record).
        self._pending.append((offset, kind, flags, block, page))
        self._next_row += 1

    def _flush(self) -> None:
        pend = self._pending
        if not pend:
            return
        self._pending = []
        cols = list(zip(*pend))
        n = len(pend)
        at = self.count
        with self._lock:
            self._offset.put(at, np.array(cols[0], np.int64))
            self._kind.put(at, np.array(cols[1], np.uint8))
            self._flags.put(at, np.array(cols[2], np.uint16))
            self._block.put(at, np.array(cols[3], np.int16))
            self._page.put(at, np.array(cols[4], np.uint64))
            self.count = at + n

    def _block_index(self, name: str) -> int:
        i = self._block_by_name.get(name)
        if i is None:  # a block MEM_SIZE did not announce: no page map for it
            i = len(self.blocks)
            self.blocks.append(BlockInfo(i, name, 0, 0, self.page_history.total_pages))
            self._block_by_name[name] = i
        return i

    def _current_section(self) -> SectionInfo | None:
        return self.sections[-1] if self.sections else None

    def _add(self, ev) -> None:
        t = type(ev)
        if t is PageRun:
            self._add_run(ev)
        elif t is PageRecord:
            self._add_page(ev)
        elif t is RamMarker:
            self._row(ev.offset, RowKind.MARKER, ev.flags)
            self._last_marker = ev.offset
        elif t is MultifdPacket:
            self._add_packet(ev)
        elif t is SectionStart:
            self._section_start(ev)
        elif t is SectionEnd:
            sec = self._current_section()
            if sec is not None:
                sec.payload_end = ev.offset
                sec.end_offset = ev.offset + (5 if ev.footer else 0)
                sec.end_row = self._next_row
        elif t is RamBlockList:
            self._mem_size(ev)
        elif t is MappedRamBlock:
            # mapped-ram (QEMU 9.0+): the pages sit at fixed places in the file and
            # the block's bitmap says which were written; applied at the MEM_SIZE row.
            self._mapped.append(ev)
        elif t is CommandEvent:
            self._row(ev.offset, RowKind.COMMAND, ev.cmd)
            self.commands[ev.name] = self.commands.get(ev.name, 0) + 1
            info = SectionInfo(
                self._next_row - 1,
                ev.offset,
                None,
                0,
                ev.name,
                ev.offset + 5 + ev.length,
                ev.offset + 5 + ev.length,
                self._next_row,
            )
            self.sections.append(info)
            self._section_rows.append(info.row)
        elif t is BlockRecord:
            self._row(ev.offset, RowKind.BLOCK, ev.flags)
        elif t is DirtyBitmapRecord:
            self._row(ev.offset, RowKind.DIRTY_BITMAP, ev.flags)
        elif t is DeviceState:
            self._row(ev.offset, RowKind.DEVICE)
            self.device_sections += 1
        elif t is FileHeader:
            self.version = ev.version
            self._row(ev.offset, RowKind.HEADER)
        elif t is Configuration:
            self.configuration = ev
            self._row(ev.offset, RowKind.CONFIGURATION)
        elif t is PackageEnd:
            self._row(ev.offset, RowKind.PACKAGE_END)
        elif t is EndOfStream:
            self.eof = True
            self._row(ev.offset, RowKind.EOF)
        elif t is VmDescription:
            self.has_description = True
            self._row(ev.offset, RowKind.VMDESCRIPTION)
        elif t is Undecoded:
            self.undecoded = ev.reason
            self._row(ev.offset, RowKind.UNDECODED)

    def _section_start(self, ev: SectionStart) -> None:
        self._row(ev.offset, RowKind.SECTION, int(ev.type))
        info = SectionInfo(self._next_row - 1, ev.offset, ev.type, ev.section_id, ev.idstr)
        if ev.idstr == "ram":
            info.iteration = len(self.ram_sections)
            self.ram_sections.append(len(self.sections))
        self.sections.append(info)
        self._section_rows.append(info.row)

    def _mem_size(self, ev: RamBlockList) -> None:
        self._row(ev.offset, RowKind.MEM_SIZE, int(RamFlag.MEM_SIZE))
        ps = self._known_page_size()
        self.page_size = ps
        self.page_size_source = self._decoder.page_size_source
        new = []
        mapped = self.page_history.total_pages
        for b in ev.blocks:
            if b.name in self._block_by_name:
                continue
            pages = -(-b.used_length // ps)
            if mapped + pages > MAX_MAPPED_PAGES:
                pages = 0  # too big to map; its records are still indexed
            mapped += pages
            info = BlockInfo(len(self.blocks), b.name, b.used_length, pages, 0)
            self.blocks.append(info)
            self._block_by_name[b.name] = info.index
            new.append(info)
        for info, base in zip(new, self.page_history.grow([i.pages for i in new])):
            info.base = base
        if self._mapped:
            self._apply_mapped_ram()

    def _apply_mapped_ram(self) -> None:
        """Mark the pages of each mapped-ram block's bitmap as sent (raw), as of the
        MEM_SIZE row, and checkpoint right there: rows cannot replay a bitmap."""
        for ev in self._mapped:
            blk = self.block_named(ev.name)
            if blk is None or not blk.pages:
                continue
            bits = np.unpackbits(np.frombuffer(ev.bitmap, np.uint8), bitorder="little")[: blk.pages]
            written = np.flatnonzero(bits)
            self.page_history.state[blk.base + written] = PageKind.RAW
            blk.sent[PageKind.RAW] += len(written)
        self._mapped = []
        self._checkpoint()

    def _count_pages(self, block: BlockInfo, states: np.ndarray, nbytes: int) -> None:
        counts = np.bincount(states, minlength=len(PageKind))
        block.sent += counts
        sec = self._current_section()
        if sec is not None:
            sec.pages += counts
            sec.page_bytes += nbytes

    def _add_run(self, run: PageRun) -> None:
        n = run.count
        ps = run.page_size
        # starts is an int64 buffer (the fast path's array), typed as a sequence
        offsets = np.frombuffer(run.starts, dtype=np.int64, count=n) + run.offset  # type: ignore[call-overload]
        kinds = np.frombuffer(run.kinds, dtype=np.uint8)
        bi = self._block_index(run.block)
        first = run.addr // ps
        pages = np.arange(first, first + n, dtype=np.uint64)
        self._append(offsets, RowKind.PAGE, kinds.astype(np.uint16) | RAM_CONTINUE, bi, pages)
        blk = self.blocks[bi]
        states = STATE_OF_FLAGS[kinds]
        if blk.pages:
            self.page_history.state[blk.base + first : blk.base + first + n] = states
        self._count_pages(blk, states, len(run.data))
        self._after_rows(n)

    def _add_packet(self, pkt: MultifdPacket) -> None:
        """A multifd packet's pages become rows (normal pages, then zero pages) at
        the offset of the main-stream record of its sync point, where they apply."""
        ps = self._known_page_size()
        normal = np.asarray(pkt.normal, dtype=np.uint64) // ps
        zero = np.asarray(pkt.zero, dtype=np.uint64) // ps
        n = len(normal) + len(zero)
        info = MultifdPacketInfo(
            pkt.channel,
            pkt.file,
            pkt.offset,
            pkt.packet_num,
            pkt.flags,
            pkt.block,
            len(normal),
            len(zero),
            pkt.payload_size,
        )
        if not n:
            return
        bi = self._block_index(pkt.block)
        first_row = self._next_row
        self._flush()
        flags = np.concatenate(
            [
                np.full(len(normal), MULTIFD_ROW | RAM_PAGE, np.uint16),
                np.full(len(zero), MULTIFD_ROW | RAM_ZERO, np.uint16),
            ]
        )
        pages = np.concatenate([normal, zero])
        self._append(np.full(n, self._last_marker, np.int64), RowKind.PAGE, flags, bi, pages)
        self.packets.append((first_row, n, info))
        blk = self.blocks[bi]
        states = STATE_OF_FLAGS[flags]
        ok = pages < blk.pages
        self.page_history.state[blk.base + pages[ok].astype(np.int64)] = states[ok]
        self._count_pages(blk, states, pkt.payload_size)
        self._after_rows(n)

    def packet_of_row(self, row: int):
        """(first row, rows, MultifdPacketInfo) of the packet a multifd row came from."""
        if len(self._packet_rows) != len(self.packets):
            self._packet_rows = np.asarray([p[0] for p in self.packets], dtype=np.int64)
        i = int(np.searchsorted(self._packet_rows, row, side="right")) - 1
        if i < 0:
            return None
        first, n, info = self.packets[i]
        return (first, n, info) if row < first + n else None

    def _known_page_size(self) -> int:
        """The page size, which the decoder knows before the first RAM record."""
        ps = self._decoder.page_size
        assert ps is not None, "a RAM record before the page size is known"
        return ps

    def _add_page(self, rec: PageRecord) -> None:
        bi = self._block_index(rec.block)
        ps = self._decoder.page_size
        assert ps is not None, "a RAM record before the page size is known"  # inline: once per record
        page = rec.addr // ps
        self._row(rec.offset, RowKind.PAGE, rec.flags, bi, page)
        blk = self.blocks[bi]
        state = int(STATE_OF_FLAGS[rec.flags])
        if page < blk.pages:
            self.page_history.state[blk.base + page] = state
        blk.sent[state] += 1
        sec = self._current_section()
        if sec is not None:
            sec.pages[state] += 1
            sec.page_bytes += rec.size
        self._after_rows(1)

    def _after_rows(self, n: int) -> None:
        if self.page_history.after_rows(n):
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._flush()
        self.page_history.checkpoint(self.count)

    # --- reading -----------------------------------------------------------------

    def rows(self) -> Rows:
        with self._lock:
            n = self.count
            return Rows(
                n,
                self._offset.data[:n],
                self._kind.data[:n],
                self._flags.data[:n],
                self._block.data[:n],
                self._page.data[:n],
            )

    @property
    def total_pages(self) -> int:
        return self.page_history.total_pages

    def block_named(self, name: str) -> BlockInfo | None:
        i = self._block_by_name.get(name)
        return self.blocks[i] if i is not None else None

    def section_of_row(self, row: int) -> SectionInfo | None:
        """The section (or command) a row belongs to."""
        n = len(self.sections)
        starts = self._section_starts
        if len(starts) != n:
            starts = self._section_starts = np.asarray(self._section_rows[:n], dtype=np.int64)
        i = int(np.searchsorted(starts, row, side="right")) - 1
        return self.sections[i] if i >= 0 else None

    def iteration_of_row(self, row: int) -> int | None:
        sec = self.section_of_row(row)
        return sec.iteration if sec is not None else None

    def row_at_offset(self, offset: int) -> int:
        """The row that contains byte ``offset`` (the last row starting at or before it)."""
        r = self.rows()
        i = int(np.searchsorted(r.offset, offset, side="right")) - 1
        return max(i, 0)

    def page_states(self, row: int) -> np.ndarray:
        """How every page (all blocks, see ``BlockInfo.base``) was last sent as of
        ``row`` inclusive (-1: before the first row).  A new array, cached for the
        last row asked."""
        return self.page_history.as_of(row, self.rows(), self.blocks)

    def rows_touching(self, block: int, page: int, upto: int | None = None) -> np.ndarray:
        """Rows of the RAM records that sent ``page`` of ``block``, in order."""
        r = self.rows()
        n = r.count if upto is None else min(r.count, upto)
        hits = (r.block[:n] == block) & (r.page[:n] == page) & (r.kind[:n] == RowKind.PAGE)
        return np.flatnonzero(hits)

    def changed_pages(self, first: int, last: int) -> np.ndarray:
        """State slots written by rows first..last inclusive."""
        return self.page_history.changed(first, last, self.rows(), self.blocks)

    def close(self) -> None:
        for reader in self._packet_readers.values():
            reader.close()
        self._packet_readers.clear()
        self.cancel()
        if self._state_reader is not None:
            self._state_reader.close()
        if self._spool is not None:
            self._spool.close()
        elif self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
