"""Random access to a migration stream: the model behind the TUI (no Textual here).

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

"Page map as of row N": the scan keeps one state byte per page (``PageState``:
how the page was last sent) and saves a copy every K rows.  ``page_states(N)``
copies the checkpoint at or before N and replays the rows in between with numpy
(at most K rows), so any cursor position costs one copy and one vectorised pass.
"""

from __future__ import annotations

import enum
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from construct import ConstructError

from ..containers.sources import StreamSource
from ..containers.stream import open_decoder
from ..decode.pages import apply_page
from ..errors import MigstreamError, StreamError
from ..events import (
    NEED_DATA,
    BlockRecord,
    CommandEvent,
    Configuration,
    DeviceState,
    DirtyBitmapRecord,
    EndOfStream,
    FileHeader,
    MappedRamBlock,
    MultifdPacket,
    PackageEnd,
    PageRecord,
    PageRun,
    RamBlockList,
    RamMarker,
    SectionEnd,
    SectionStart,
    Undecoded,
    VmDescription,
    block_flag_names,
    dirty_bitmap_flag_names,
)
from ..wire import grammar as g
from ..wire.grammar import Command, RamFlag, SectionType

_CONTINUE = int(RamFlag.CONTINUE)
_PAGE, _ZERO, _XBZRLE, _COMPRESS = (
    int(RamFlag.PAGE),
    int(RamFlag.ZERO),
    int(RamFlag.XBZRLE),
    int(RamFlag.COMPRESS_PAGE),
)


class RowKind(enum.IntEnum):
    """What a row of the index is."""

    HEADER = 0
    CONFIGURATION = 1
    SECTION = 2  # a section header (START/PART/END/FULL); flags = SectionType
    MEM_SIZE = 3
    PAGE = 4  # a RAM record for one page; flags = RAM flags
    MARKER = 5  # EOS, MULTIFD_FLUSH, HOOK; flags = RAM flags
    COMMAND = 6  # flags = command number
    DEVICE = 7  # a device section's payload
    PACKAGE_END = 8
    EOF = 9
    VMDESCRIPTION = 10
    UNDECODED = 11
    BLOCK = 12  # a block migration record ("block" section); flags = BLK_MIG_FLAG_*
    DIRTY_BITMAP = 13  # a dirty-bitmap record; flags = DIRTY_BITMAP_MIG_FLAG_*


class PageState(enum.IntEnum):
    """How a page was last sent: the page map's colours."""

    NEVER = 0
    ZERO = 1
    RAW = 2
    XBZRLE = 3
    COMPRESSED = 4
    MULTIFD = 5  # pages on multifd channels (not in a main-channel stream)


#: Rows for pages that came in multifd packets (channel files) carry RAM kind bits
#: plus this bit, above every real RAM flag (those stay below 0x400).
MULTIFD_ROW = 0x400

#: RAM record kind -> PageState.
_STATE_OF_KIND = np.zeros(0x800, dtype=np.uint8)
_STATE_OF_KIND[_ZERO] = PageState.ZERO
_STATE_OF_KIND[_PAGE] = PageState.RAW
_STATE_OF_KIND[_XBZRLE] = PageState.XBZRLE
_STATE_OF_KIND[_COMPRESS] = PageState.COMPRESSED
_STATE_OF_KIND[_ZERO | _CONTINUE] = PageState.ZERO
_STATE_OF_KIND[_PAGE | _CONTINUE] = PageState.RAW
_STATE_OF_KIND[_XBZRLE | _CONTINUE] = PageState.XBZRLE
_STATE_OF_KIND[_COMPRESS | _CONTINUE] = PageState.COMPRESSED
_STATE_OF_KIND[MULTIFD_ROW | _PAGE] = PageState.MULTIFD
_STATE_OF_KIND[MULTIFD_ROW | _ZERO] = PageState.ZERO

ENCODING_OF_STATE = {
    PageState.NEVER: "never sent",
    PageState.ZERO: "zero",
    PageState.RAW: "raw",
    PageState.XBZRLE: "xbzrle",
    PageState.COMPRESSED: "compressed",
    PageState.MULTIFD: "multifd",
}

MIN_CHECKPOINT_ROWS = 65536
#: Pages with a page map, all blocks together (one byte each, plus checkpoints):
#: 64 Mi pages is a 256 GiB guest at 4 KiB.  Blocks past it (or a hostile
#: MEM_SIZE) get no page map rather than a huge allocation.
MAX_MAPPED_PAGES = 1 << 26
_NO_BLOCK = -1


@dataclass
class BlockInfo:
    index: int
    name: str
    used_length: int
    pages: int
    base: int  # first slot in the page-state array
    sent: np.ndarray = field(default_factory=lambda: np.zeros(len(PageState), dtype=np.int64))  # records by state


@dataclass
class SectionInfo:
    """One section (or command) in stream order: the timeline's lines."""

    row: int
    offset: int
    type: SectionType | None  # None for a command
    section_id: int
    idstr: str
    end_offset: int = 0  # after the footer
    payload_end: int = 0  # where the footer (or the next element) starts
    end_row: int = 0
    iteration: int | None = None  # position among the RAM sections: START 0, PARTs 1.., END last
    pages: np.ndarray = field(default_factory=lambda: np.zeros(len(PageState), dtype=np.int64))
    page_bytes: int = 0  # bytes of RAM page records

    @property
    def label(self) -> str:
        if self.type is None:
            return f"COMMAND {self.idstr}"
        return f"{self.type.name} {self.idstr}"


@dataclass(frozen=True)
class ScanProgress:
    bytes_done: int
    bytes_total: int | None
    rows: int
    complete: bool


@dataclass(frozen=True)
class MultifdPacketInfo:
    channel: int
    file: str
    offset: int  # in the channel file
    packet_num: int
    flags: int
    block: str
    normal_pages: int
    zero_pages: int
    payload_size: int


@dataclass
class RecordDetail:
    """One row read back from the stream."""

    row: int
    kind: RowKind
    offset: int
    size: int  # bytes of the element (header + payload)
    header: bytes  # the bytes before the payload
    payload: bytes
    flags: int = 0
    addr: int | None = None
    block: str | None = None
    idstr_in_record: bool = False
    fill: int | None = None
    compressed_length: int | None = None
    description: str = ""
    multifd: MultifdPacketInfo | None = None


class _Column:
    """A growable numpy column; ``view(n)`` is safe to read while it grows."""

    def __init__(self, dtype) -> None:
        self.data = np.zeros(1024, dtype=dtype)

    def put(self, at: int, values) -> None:
        end = at + len(values)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[:at] = self.data[:at]
            grown[at:end] = values
            self.data = grown  # one reference swap: readers see old or new, both valid to `at`
        else:
            self.data[at:end] = values


@dataclass(frozen=True)
class Rows:
    """A consistent snapshot of the index columns (views, do not modify)."""

    count: int
    offset: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    block: np.ndarray
    page: np.ndarray


class StreamIndex:
    """The rows of a stream and the page state of its RAM blocks, built by ``scan()``."""

    def __init__(
        self, path: str, *, page_size: int | None = None, checkpoint_rows: int | None = None, channels=()
    ) -> None:
        self.path = path
        self.channels = [str(c) for c in channels]  # multifd channel files
        self._packet_readers: dict = {}  # channel file name -> multifd.PacketReader
        self.packets: list[tuple[int, int, MultifdPacketInfo]] = []  # (first row, rows, packet)
        self._packet_rows = np.zeros(0, np.int64)
        self._last_marker = 0
        self._source = StreamSource(path)
        self.size = self._source.size  # None until a spooled source is complete
        if self._source.seekable_file is not None:
            self._fd = os.open(path, os.O_RDONLY)
            self._spool = None
        else:
            self._spool = tempfile.TemporaryFile(prefix="migstream-spool-")
            self._fd = self._spool.fileno()
        self.spooled = self._spool is not None
        self._decoder = open_decoder(self._source, page_size=page_size)
        self._checkpoint_rows = checkpoint_rows
        self._lock = threading.Lock()
        self._cancel = threading.Event()

        self.count = 0  # rows readers can see
        self._next_row = 0  # rows added, committed or not
        self._pending: list[tuple] = []
        self._offset = _Column(np.int64)
        self._kind = _Column(np.uint8)
        self._flags = _Column(np.uint16)
        self._block = _Column(np.int16)
        self._page = _Column(np.uint64)

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
        self.error: StreamError | None = None
        self.complete = False
        self.bytes_done = 0
        self.ram_complete = False

        self._mapped: list[MappedRamBlock] = []
        self._state = np.zeros(0, dtype=np.uint8)
        self._checkpoints: list[tuple[int, np.ndarray]] = [(0, self._state.copy())]
        self._rows_since_checkpoint = 0
        self._state_cache: tuple[int, np.ndarray] | None = None

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
                from ..containers.multifd import with_channels

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

    def _row(self, offset: int, kind: RowKind, flags: int = 0, block: int = _NO_BLOCK, page: int = 0) -> None:
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
            self.blocks.append(BlockInfo(i, name, 0, 0, len(self._state)))
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
        ps = self._decoder.page_size
        self.page_size = ps
        self.page_size_source = self._decoder.page_size_source
        grow = []
        for b in ev.blocks:
            if b.name in self._block_by_name:
                continue
            pages = -(-b.used_length // ps)
            base = len(self._state) + sum(len(g) for g in grow)
            if base + pages > MAX_MAPPED_PAGES:
                pages = 0  # too big to map; its records are still indexed
            info = BlockInfo(len(self.blocks), b.name, b.used_length, pages, base)
            self.blocks.append(info)
            self._block_by_name[b.name] = info.index
            grow.append(np.zeros(pages, np.uint8))
        if grow:
            self._state = np.concatenate([self._state, *grow])
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
            self._state[blk.base + written] = PageState.RAW
            blk.sent[PageState.RAW] += len(written)
        self._mapped = []
        self._checkpoint()

    def _count_pages(self, block: BlockInfo, states: np.ndarray, nbytes: int) -> None:
        counts = np.bincount(states, minlength=len(PageState))
        block.sent += counts
        sec = self._current_section()
        if sec is not None:
            sec.pages += counts
            sec.page_bytes += nbytes

    def _add_run(self, run: PageRun) -> None:
        n = run.count
        ps = run.page_size
        offsets = np.frombuffer(run.starts, dtype=np.int64, count=n) + run.offset
        kinds = np.frombuffer(run.kinds, dtype=np.uint8)
        bi = self._block_index(run.block)
        first = run.addr // ps
        pages = np.arange(first, first + n, dtype=np.uint64)
        self._append(offsets, RowKind.PAGE, kinds.astype(np.uint16) | _CONTINUE, bi, pages)
        blk = self.blocks[bi]
        states = _STATE_OF_KIND[kinds]
        if blk.pages:
            self._state[blk.base + first : blk.base + first + n] = states
        self._count_pages(blk, states, len(run.data))
        self._after_rows(n)

    def _add_packet(self, pkt: MultifdPacket) -> None:
        """A multifd packet's pages become rows (normal pages, then zero pages) at
        the offset of the main-stream record of its sync point, where they apply."""
        ps = self._decoder.page_size
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
            [np.full(len(normal), MULTIFD_ROW | _PAGE, np.uint16), np.full(len(zero), MULTIFD_ROW | _ZERO, np.uint16)]
        )
        pages = np.concatenate([normal, zero])
        self._append(np.full(n, self._last_marker, np.int64), RowKind.PAGE, flags, bi, pages)
        self.packets.append((first_row, n, info))
        blk = self.blocks[bi]
        states = _STATE_OF_KIND[flags]
        ok = pages < blk.pages
        self._state[blk.base + pages[ok].astype(np.int64)] = states[ok]
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

    def _add_page(self, rec: PageRecord) -> None:
        bi = self._block_index(rec.block)
        ps = self._decoder.page_size
        page = rec.addr // ps
        self._row(rec.offset, RowKind.PAGE, rec.flags, bi, page)
        blk = self.blocks[bi]
        state = int(_STATE_OF_KIND[rec.flags])
        if page < blk.pages:
            self._state[blk.base + page] = state
        blk.sent[state] += 1
        sec = self._current_section()
        if sec is not None:
            sec.pages[state] += 1
            sec.page_bytes += rec.size
        self._after_rows(1)

    def _after_rows(self, n: int) -> None:
        self._rows_since_checkpoint += n
        every = self._checkpoint_rows or max(MIN_CHECKPOINT_ROWS, len(self._state))
        if self._rows_since_checkpoint >= every:
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._flush()
        with self._lock:
            if self._checkpoints[-1][0] == self.count and len(self._checkpoints[-1][1]) == len(self._state):
                return
            self._checkpoints.append((self.count, self._state.copy()))
            self._rows_since_checkpoint = 0

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
        return len(self._state)

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
        cached = self._state_cache
        if cached is not None and cached[0] == row:
            return cached[1]
        with self._lock:
            cps = list(self._checkpoints)
        target = row + 1  # rows [0, target) applied
        i = max(k for k, (at, _) in enumerate(cps) if at <= target)
        at, snap = cps[i]
        state = np.zeros(self.total_pages, dtype=np.uint8)
        state[: len(snap)] = snap
        r = self.rows()
        target = min(target, r.count)
        if target > at:
            kind = r.kind[at:target]
            sel = np.flatnonzero(kind == RowKind.PAGE)
            if len(sel):
                blocks = r.block[at:target][sel]
                pages = r.page[at:target][sel].astype(np.int64)
                flags = r.flags[at:target][sel]
                self._apply(state, blocks, pages, _STATE_OF_KIND[flags])
        self._state_cache = (row, state)
        return state

    def _apply(self, state, blocks, pages, values) -> None:
        bases = np.array([b.base for b in self.blocks] + [0], dtype=np.int64)
        limits = np.array([b.pages for b in self.blocks] + [0], dtype=np.int64)
        ok = pages < limits[blocks]
        slots = (bases[blocks] + pages)[ok]
        values = values[ok]
        # The last write to a slot wins: take each slot's last occurrence.
        rev = slots[::-1]
        uniq, first = np.unique(rev, return_index=True)
        state[uniq] = values[::-1][first]

    def rows_touching(self, block: int, page: int, upto: int | None = None) -> np.ndarray:
        """Rows of the RAM records that sent ``page`` of ``block``, in order."""
        r = self.rows()
        n = r.count if upto is None else min(r.count, upto)
        hits = (r.block[:n] == block) & (r.page[:n] == page) & (r.kind[:n] == RowKind.PAGE)
        return np.flatnonzero(hits)

    def changed_pages(self, first: int, last: int) -> np.ndarray:
        """State slots written by rows first..last inclusive."""
        r = self.rows()
        last = min(last, r.count - 1)
        if last < first:
            return np.zeros(0, np.int64)
        kind = r.kind[first : last + 1]
        sel = np.flatnonzero(kind == RowKind.PAGE)
        blocks = r.block[first : last + 1][sel]
        pages = r.page[first : last + 1][sel].astype(np.int64)
        bases = np.array([b.base for b in self.blocks] + [0], dtype=np.int64)
        limits = np.array([b.pages for b in self.blocks] + [0], dtype=np.int64)
        ok = pages < limits[blocks]
        return (bases[blocks] + pages)[ok]

    def read(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def row_end(self, row: int) -> int:
        """Where the element of ``row`` ends at the latest (the next row's offset)."""
        r = self.rows()
        if row + 1 < r.count:
            nxt = int(r.offset[row + 1])
        else:
            nxt = self.bytes_done
        sec = self.section_of_row(row)
        if sec is not None and sec.type is not None and sec.payload_end > int(r.offset[row]):
            nxt = min(nxt, sec.payload_end)  # the footer is not part of the last element
        return nxt

    def detail(self, row: int) -> RecordDetail:
        """The row's element read back from the stream and parsed."""
        r = self.rows()
        kind = RowKind(int(r.kind[row]))
        off = int(r.offset[row])
        if kind in (RowKind.PAGE, RowKind.MARKER, RowKind.MEM_SIZE):
            return self._ram_detail(row, kind, off, int(r.flags[row]), int(r.block[row]))
        end = self.row_end(row)
        size = max(0, end - off)
        head_len = _HEAD_LEN.get(kind, 0)
        if kind == RowKind.SECTION and int(r.flags[row]) in (SectionType.START, SectionType.FULL):
            src = _ReadBack(self, off + _TYPE_BYTE)
            try:
                g.SectionStartHeader.parse_stream(src)
            except ConstructError:
                pass
            head_len = src.tell() - off
            size = head_len  # the payload rows follow
        block_rec = None
        if kind == RowKind.BLOCK:
            src = _ReadBack(self, off)
            try:
                block_rec = g.BlockRecordHead.parse_stream(src)
                head_len = src.tell() - off
            except ConstructError:
                pass
        data = self.read(off, min(size, 1 << 16))
        sec = self.section_of_row(row)
        desc = ""
        if kind == RowKind.HEADER:
            desc = f"file header: magic {data[:4]!r}, stream version {self.version}"
        elif kind == RowKind.CONFIGURATION and self.configuration is not None:
            cfg = self.configuration
            desc = f"configuration: machine {cfg.machine!r}"
            if cfg.target_page_bits:
                desc += f", target page bits {cfg.target_page_bits}"
            if cfg.capabilities:
                desc += f", capabilities {', '.join(cfg.capabilities)}"
        elif kind == RowKind.SECTION and sec is not None:
            desc = f"section {sec.type.name} id {sec.section_id} '{sec.idstr}'"
            if sec.iteration is not None:
                desc += f" (RAM iteration {sec.iteration}: {int(sec.pages.sum())} pages, {sec.page_bytes} bytes)"
        elif kind == RowKind.COMMAND:
            desc = f"command {command_name(int(r.flags[row]))}, {max(0, size - 5)} bytes of arguments"
        elif kind == RowKind.DEVICE and sec is not None:
            desc = f"device state of '{sec.idstr}' ({size} bytes, not interpreted)"
        elif kind == RowKind.DIRTY_BITMAP:
            desc = f"dirty bitmap record {dirty_bitmap_flag_names(int(r.flags[row]))}"
        elif kind == RowKind.BLOCK:
            desc = f"block migration {block_flag_names(int(r.flags[row]))}"
            if block_rec is not None and block_rec.device is not None:
                desc += f": disk '{block_rec.device}' at byte {block_rec.value << g.BLOCK_SECTOR_BITS:#x}, " + (
                    "all zero (not sent)" if block_rec.flags & g.BlockFlag.ZERO_BLOCK else f"{size - head_len} bytes"
                )
            elif block_rec is not None and block_rec.flags & g.BlockFlag.PROGRESS:
                desc += f": bulk phase {block_rec.value}% done"
        elif kind == RowKind.EOF:
            desc = "QEMU_VM_EOF: end of the device state"
        elif kind == RowKind.VMDESCRIPTION:
            desc = f"VMDESCRIPTION: {max(0, size - 5)} bytes of JSON describing the device sections"
        elif kind == RowKind.PACKAGE_END:
            desc = "end of a PACKAGED command's nested stream"
        elif kind == RowKind.UNDECODED:
            desc = self.undecoded or "not decoded"
        return RecordDetail(row, kind, off, size, data[:head_len], data[head_len:], int(r.flags[row]), description=desc)

    def _ram_detail(self, row, kind, off, flags, block) -> RecordDetail:
        ps = self.page_size or 4096
        if flags & MULTIFD_ROW:
            r = self.rows()
            found = self.packet_of_row(row)
            name = self.blocks[block].name if 0 <= block < len(self.blocks) else None
            det = RecordDetail(row, kind, off, 0, b"", b"", flags, int(r.page[row]) * ps, name)
            if found is not None:
                first, n, info = found
                det.multifd = info
                what = "normal page" if flags & _PAGE else "zero page"
                det.description = (
                    f"{what} {row - first + 1} of {n} in multifd packet {info.packet_num} on channel "
                    f"{info.channel} ({os.path.basename(info.file)} at offset {info.offset:#x}; "
                    f"{info.normal_pages} normal + {info.zero_pages} zero pages, "
                    f"{info.payload_size} payload bytes); applied at the sync point at "
                    f"main-stream offset {off:#x}"
                )
            return det
        src = _ReadBack(self, off)
        try:
            head = g.RamRecordHeader.parse_stream(src, page_size=ps)
        except ConstructError:
            return RecordDetail(
                row, kind, off, 0, self.read(off, 8), b"", flags, description="the record cannot be read back"
            )
        header_end = src.tell()
        det = RecordDetail(
            row,
            kind,
            off,
            0,
            b"",
            b"",
            head.flags,
            head.addr if kind == RowKind.PAGE else None,
            self.blocks[block].name if 0 <= block < len(self.blocks) else None,
            head.idstr is not None,
        )
        if kind == RowKind.MEM_SIZE:
            end = self.row_end(row)
            det.header = self.read(off, header_end - off)
            det.payload = self.read(header_end, min(end - header_end, 1 << 16))
            det.size = end - off
            det.addr = None
            return det
        try:
            payload = g.RAM_PAYLOADS[head.kind].parse_stream(src, page_size=ps)
        except (ConstructError, KeyError):
            payload = None
        # The payload shown is the page, the fill byte or the delta / zlib bytes; the
        # header, everything before it (encoding byte and length prefixes included).
        if payload is None or head.kind not in g.PAGE_KINDS:
            data = b""
        elif head.kind == _ZERO:
            det.fill = payload.fill
            data = bytes([payload.fill])
        else:
            data = bytes(payload.data)
            if head.kind == _COMPRESS:
                det.compressed_length = len(data)
        end = src.tell() if payload is not None else header_end
        det.header = self.read(off, end - off - len(data))
        det.payload = data
        det.size = end - off
        return det

    def payload_size(self, row: int) -> int:
        """Bytes of payload after the record header (length prefixes included), as
        ``migstream records`` reports it."""
        d = self.detail(row)
        if d.multifd is not None:
            return (self.page_size or 4096) if d.flags & _PAGE else 0
        if d.kind == RowKind.PAGE:
            base = d.flags & ~_CONTINUE
            n = len(d.payload)
            return n + (3 if base == _XBZRLE else 4 if base == _COMPRESS else 0)
        return len(d.payload)

    def page_content(self, row: int, before: bool = False) -> bytes | None:
        """The content of the page that page-record ``row`` targets, right after it
        is applied (or right ``before``); pages never sent read as zero, as on a fresh
        destination.  None when it cannot be rebuilt (a corrupt record)."""
        r = self.rows()
        if r.kind[row] != RowKind.PAGE:
            return None
        ps = self.page_size or 4096
        hist = self.rows_touching(int(r.block[row]), int(r.page[row]), upto=row + (0 if before else 1))
        start = 0
        for i in range(len(hist) - 1, -1, -1):
            if int(r.flags[hist[i]]) & ~_CONTINUE != _XBZRLE:
                start = i
                break
        page = bytearray(ps)
        for h in hist[start:]:
            if int(r.flags[h]) & MULTIFD_ROW:
                data = self.multifd_page(int(h))
                if data is None:
                    return None
                page[:] = data
                continue
            d = self.detail(int(h))
            try:
                apply_page(page, d.flags & ~_CONTINUE, d.payload, d.fill or 0, offset=d.offset)
            except StreamError:
                return None
        return bytes(page)

    def multifd_page(self, row: int) -> bytes | None:
        """What multifd row ``row`` puts in its page: the normal page read back from its
        channel file's packet (decompressed), or zeros.  None when the channel file
        cannot be read back."""
        found = self.packet_of_row(row)
        if found is None:
            return None
        first, _n, info = found
        ps = self.page_size or 4096
        i = row - first
        if i >= info.normal_pages:
            return bytes(ps)
        from ..containers.multifd import PacketReader

        reader = self._packet_readers.get(info.file)
        if reader is None:
            path = next((c for c in self.channels if os.path.basename(c) == info.file), None)
            if path is None:
                return None
            reader = self._packet_readers[info.file] = PacketReader(
                path, ps, {b.name: b for b in self.blocks if b.used_length}
            )
        try:
            pkt = reader.packet(info.offset, info.flags)
        except MigstreamError:
            return None
        return bytes(pkt.page(i))

    def close(self) -> None:
        for reader in self._packet_readers.values():
            reader.close()
        self._packet_readers.clear()
        self.cancel()
        if self._spool is not None:
            self._spool.close()
        else:
            try:
                os.close(self._fd)
            except OSError:
                pass


_TYPE_BYTE = 1  # every top-level element starts with its QEMU_VM_* byte
#: Bytes shown as the header of a row's element (the rest is its payload).
_HEAD_LEN = {
    RowKind.HEADER: g.FileHeader.sizeof(),
    RowKind.SECTION: _TYPE_BYTE + g.SectionPartHeader.sizeof(),
    RowKind.COMMAND: _TYPE_BYTE + g.CommandHeader.sizeof(),
    RowKind.CONFIGURATION: _TYPE_BYTE,
    RowKind.VMDESCRIPTION: _TYPE_BYTE + g.VmDescription.subcons[0].subcon.lengthfield.sizeof(),
    RowKind.EOF: _TYPE_BYTE,
}


class _ReadBack:
    """The indexed stream from ``offset`` on as a file for construct's parse_stream
    (reads go through ``StreamIndex.read``: pread, only the bytes parsed)."""

    def __init__(self, index: StreamIndex, offset: int) -> None:
        self._index = index
        self._pos = offset

    def read(self, n: int) -> bytes:
        data = self._index.read(self._pos, n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos


def command_name(cmd: int) -> str:
    try:
        return Command(cmd).name
    except ValueError:
        return f"0x{cmd:x}"


def xbzrle_runs(delta: bytes) -> list[tuple[int, int, int]]:
    """(page offset, length, delta offset of the new bytes) for every data run of
    an XBZRLE delta (migration/xbzrle.c: zero run, data run, ... ULEB128 lengths);
    stops quietly at the first malformed run (the decoder reports those)."""
    runs = []
    i = d = 0
    n = len(delta)

    def uleb(i):
        b = delta[i]
        if b < 0x80:
            return b, i + 1
        if i + 1 >= n:
            raise IndexError
        return (b & 0x7F) | (delta[i + 1] << 7), i + 2

    try:
        while i < n:
            z, i = uleb(i)
            d += z
            if i >= n:
                break
            nz, i = uleb(i)
            runs.append((d, nz, i))
            i += nz
            d += nz
    except IndexError:
        pass
    return runs
