"""Multifd channels: the RAM pages a multifd migration sends beside the main stream.

A multifd migration opens the main connection plus N channel connections; a capture
keeps one file per connection.  Each channel starts with MultiFDInit_t and carries RAM
packets (grammar.MultiFDPacket): a header, an offset table (normal pages first, then
zero pages, QEMU 9.0+), and, when the packet has normal pages, a payload: raw pages
(nocomp) or the next piece of ONE zlib/zstd stream that runs through the whole channel
(multifd-zlib.c, multifd-zstd.c), so a channel is decoded from its start, in order.

Ordering (multifd.c multifd_send_sync_main / multifd_recv_sync_main): on each sync
point every channel sends one SYNC packet, and the destination's main thread waits
until every channel has received its SYNC.  The main stream marks sync points with
RAM_SAVE_FLAG_MULTIFD_FLUSH (QEMU 8.0+), or with every RAM EOS (QEMU < 8.0 and machine
types with multifd-flush-after-each-section).  Between two sync points a page is sent
at most once, so the packets of one "epoch" (each channel's packets up to and
including its next SYNC) are applied together, merged by packet_num, right after the
main-stream record that closes the epoch.

``with_channels`` wraps the main stream's events and inserts ``MultifdPacket`` and
``MultifdSync`` events at those points; ``RamImage`` applies packets like any page
event.  Errors name the channel file and the offset in it.
"""

from __future__ import annotations

import heapq
import mmap
import os
import stat
import struct
import zlib
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import BinaryIO
from typing import NoReturn

from construct import Bytes
from construct import FormatField

from ..errors import StreamError
from ..errors import UsageError
from ..events import MultifdPacket
from ..events import MultifdSync
from ..events import RamBlockList
from ..events import RamMarker
from ..wire import grammar as g
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_EOS
from ..wire.grammar import RAM_MULTIFD_FLUSH
from .compressed import HEAD
from .compressed import detect_compression
from .compressed import open_decompressed

if TYPE_CHECKING:
    from zstandard import ZstdDecompressionObj

MultifdFlag = g.MultifdFlag
_SYNC = int(MultifdFlag.SYNC)
_DEVICE_STATE = int(MultifdFlag.DEVICE_STATE)
_NOCOMP, _ZLIB, _ZSTD = 0, int(MultifdFlag.ZLIB), int(MultifdFlag.ZSTD)
#: A compressed payload never exceeds the receiver's buffer, twice the packet size
#: (multifd-zlib.c / multifd-zstd.c zbuff_len).
MAX_COMPRESSED = 2 * g.MULTIFD_PACKET_SIZE
MAX_DEVICE_STATE = 1 << 30
#: zstd output is produced piecewise from this much input, so that a hostile
#: payload cannot inflate to more than a bounded amount before it is rejected.
_ZSTD_FEED = 1024


def _struct_of(con) -> struct.Struct:
    """A ``struct`` format for a grammar Struct of fixed-size fields (FormatFields and
    Bytes): the fast path derived from the declaration, not written twice."""
    fmt = ">"
    for sc in con.subcons:
        inner = sc.subcon if hasattr(sc, "subcon") else sc
        if isinstance(inner, FormatField):
            fmt += inner.fmtstr.lstrip("<>=!")
        elif isinstance(inner, Bytes):
            fmt += f"{inner.length}s"
        else:  # pragma: no cover - a grammar change this derivation cannot follow
            raise TypeError(f"{sc.name}: not a fixed-size field")
    s = struct.Struct(fmt)
    assert s.size == con.sizeof()
    return s


INIT = _struct_of(g.MultiFDInit)
HEADER = _struct_of(g.MultiFDPacketHdr)
PACKET = _struct_of(g.MultiFDPacketFixed)
DEVICE_STATE = _struct_of(g.MultiFDPacketDeviceState)
_PACKET_FIELDS = [sc.name for sc in g.MultiFDPacketFixed.subcons]


class ChannelError(StreamError):
    """A fault in a multifd channel file; ``offset`` is an offset in that file."""

    def __init__(
        self, message: str, file: str, offset: int, *, block: str | None = None, addr: int | None = None
    ) -> None:
        super().__init__(message, offset, section="multifd", block=block, addr=addr)
        self.file = file

    def __str__(self) -> str:
        where = f"channel file {self.file}, offset 0x{self.offset:x}"
        if self.block is not None:
            where += f", block {self.block}"
        if self.addr is not None:
            where += f", page 0x{self.addr:x}"
        return f"error in {where}: {self.message}"


class ChannelInput:
    """Sequential reads from a channel file: mmap'd when plain (reads are views, not
    copies), else through a decompressor (compressed.py)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self._view: memoryview | None = None
        self._reader: BinaryIO | None = None
        opener = getattr(path, "open_reader", None)
        if opener is not None:  # a connection in a packet capture (pcap.CaptureChannel)
            self._reader = self._file = opener()
            return
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot open channel file {path}: {exc.strerror}") from exc
        self._file = f
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"channel file {path} is a directory")
        kind = detect_compression(f.read(HEAD))
        f.seek(0)
        if kind is None and stat.S_ISREG(st.st_mode):
            self._view = (
                memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)) if st.st_size else memoryview(b"")
            )
        elif kind is not None:
            self._reader = open_decompressed(f, kind, path)
        else:
            self._reader = f

    def read(self, n: int) -> memoryview | bytes:
        """Up to n bytes (fewer only at the end of the file)."""
        data: memoryview | bytes
        if self._view is not None:
            data = self._view[self.offset : self.offset + n]
        else:
            assert self._reader is not None  # the file is either mapped or read
            parts = []
            got = 0
            while got < n:
                try:
                    piece = self._reader.read(min(n - got, 4 << 20))
                except Exception as exc:  # zstandard.ZstdError, OSError, EOFError
                    raise UsageError(f"channel file {self.path}: cannot read compressed input: {exc}") from exc
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.offset += len(data)
        return data

    def skip(self, n: int) -> int:
        if self._view is not None:
            n = min(n, len(self._view) - self.offset)
            self.offset += n
            return n
        done = 0
        while done < n:
            piece = self.read(min(n - done, 4 << 20))
            if not piece:
                break
            done += len(piece)
        return done

    def close(self) -> None:
        self._view = None
        try:
            self._file.close()
        except OSError:
            pass


class ChannelFile:
    """One multifd channel file, decoded packet by packet."""

    def __init__(self, path: str, page_size: int) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.page_size = page_size
        self.page_count = g.multifd_page_count(page_size)
        self._offsets_size = 8 * self.page_count
        self.input = ChannelInput(path)
        head = self.input.read(INIT.size)
        if len(head) < INIT.size:
            raise ChannelError(f"file ends inside MultiFDInit_t ({len(head)} of {INIT.size} bytes)", self.name, 0)
        magic, version, uuid, cid, _u1, _u2 = INIT.unpack_from(head)
        if magic != g.MULTIFD_MAGIC:
            raise ChannelError(
                f"multifd: received packet magic {magic:x} expected {g.MULTIFD_MAGIC:x} (not a multifd channel)",
                self.name,
                0,
            )
        if version != g.MULTIFD_VERSION:
            raise ChannelError(f"multifd: received packet version {version} expected {g.MULTIFD_VERSION}", self.name, 4)
        self.id = cid
        self.uuid = bytes(uuid)
        self.compression: int | None = None
        self._zlib: zlib._Decompress | None = None
        self._zstd: ZstdDecompressionObj | None = None
        self.packets = 0
        self.sync_packets = 0
        self.normal_pages = 0
        self.zero_pages = 0
        self.device_state_packets = 0
        self.last_num = -1
        self.first_sync_alloc: int | None = None
        self.done = False

    def fail(self, msg: str, offset: int, **kw) -> NoReturn:
        raise ChannelError(f"multifd {self.id}: {msg}", self.name, offset, **kw)

    def next_packet(self, blocks: dict) -> MultifdPacket | None:
        """The next RAM packet (device-state packets are skipped), or None at the
        end of the file."""
        while True:
            off = self.input.offset
            common = self.input.read(HEADER.size)
            if not common:
                self.done = True
                return None
            if len(common) < HEADER.size:
                self.fail(f"file ends inside a packet header ({len(common)} bytes)", off)
            magic, version, flags = HEADER.unpack_from(common)
            if magic != g.MULTIFD_MAGIC:
                self.fail(f"received packet magic {magic:x}, expected {g.MULTIFD_MAGIC:x}", off)
            if version != g.MULTIFD_VERSION:
                self.fail(f"received packet version {version}, expected {g.MULTIFD_VERSION}", off)
            fixed = PACKET if not flags & _DEVICE_STATE else DEVICE_STATE
            rest = self.input.read(fixed.size - HEADER.size)
            if len(rest) < fixed.size - HEADER.size:
                self.fail(f"file ends inside a packet header ({HEADER.size + len(rest)} of {fixed.size} bytes)", off)
            head = bytes(common) + bytes(rest)
            if fixed is DEVICE_STATE:
                self._skip_device_state(off, head)
                continue
            return self._ram_packet(off, head, flags, blocks)

    def _skip_device_state(self, off: int, head: bytes) -> None:
        # MultiFDPacketDeviceState_t (10.0): framed and skipped.
        size = DEVICE_STATE.unpack_from(head)[-1]
        if size > MAX_DEVICE_STATE:
            self.fail(f"device-state packet of {size} bytes", off)
        if self.input.skip(size) != size:
            self.fail("file ends inside a device-state packet", off)
        self.device_state_packets += 1

    def _ram_packet(self, off: int, head, flags: int, blocks: dict) -> MultifdPacket:
        f = dict(zip(_PACKET_FIELDS, PACKET.unpack_from(head)))
        alloc, normal_n, zero_n = f["pages_alloc"], f["normal_pages"], f["zero_pages"]
        num = f["packet_num"]
        # multifd_ram_unfill_packet's checks (multifd-nocomp.c); the table on the wire
        # always has page_count entries (the receiver reads a fixed packet_len).
        if alloc > self.page_count:
            self.fail(f"received packet with {alloc} pages, expected {self.page_count}", off)
        if normal_n > alloc:
            self.fail(
                f"received packet with {normal_n} non-zero pages, which exceeds maximum expected pages {alloc}", off
            )
        if zero_n > alloc - normal_n:
            self.fail(f"received packet with {zero_n} zero pages, expected maximum {alloc - normal_n}", off)
        table = self.input.read(self._offsets_size)
        if len(table) < self._offsets_size:
            self.fail("file ends inside a packet's offset table", off)
        if num < self.last_num:
            self.fail(f"packet_num goes back from {self.last_num} to {num}", off)
        self.last_num = num
        sync = bool(flags & _SYNC)
        if sync:
            self.sync_packets += 1
            if self.first_sync_alloc is None:
                self.first_sync_alloc = alloc
        self.packets += 1
        block = ""
        normal: list[int] = []
        zero: list[int] = []
        if normal_n or zero_n:
            block = bytes(f["ramblock"][:255]).split(b"\0", 1)[0].decode("latin-1")
            info = blocks.get(block)
            if info is None:
                self.fail(f"unknown ram block {block}", off)
            import numpy as np  # here only: decoding a plain stream starts without numpy

            offsets = np.frombuffer(table, dtype=">u8", count=normal_n + zero_n)
            limit = info.used_length - self.page_size
            bad = np.flatnonzero((offsets > limit) | (offsets % self.page_size != 0))
            if len(bad):
                o = int(offsets[bad[0]])
                why = "not page aligned" if o % self.page_size else f"offset too long {o} (max {limit:x})"
                self.fail(why, off, block=block, addr=o)
            normal = offsets[:normal_n].tolist()
            zero = offsets[normal_n:].tolist()
        payload_size = 0
        pages: memoryview | bytes = b""
        if normal_n:
            pages, payload_size = self._payload(off, flags, normal_n, f["next_packet_size"], block)
        self.normal_pages += normal_n
        self.zero_pages += zero_n
        return MultifdPacket(
            off, self.id, self.name, num, flags, block, normal, zero, pages, self.page_size, payload_size
        )

    def _payload(self, off: int, flags: int, normal_n: int, next_size: int, block: str):
        comp = flags & g.MULTIFD_COMPRESSION_MASK
        if self.compression is None:
            self.compression = comp
        elif comp != self.compression:
            self.fail(f"flags received {comp:x} flags expected {self.compression:x}", off, block=block)
        want = normal_n * self.page_size
        if comp == _NOCOMP:
            # nocomp reads normal_pages pages, whatever next_packet_size says.
            data = self.input.read(want)
            if len(data) < want:
                self.fail(f"file ends inside a packet payload ({len(data)} of {want} bytes)", off, block=block)
            return data, want
        if comp not in (_ZLIB, _ZSTD):
            self.fail(
                f"compression {g.MULTIFD_COMPRESSION_NAMES.get(comp, hex(comp))} is not supported", off, block=block
            )
        if next_size > MAX_COMPRESSED:
            self.fail(
                f"compressed payload of {next_size} bytes (the receiver's buffer holds {MAX_COMPRESSED})",
                off,
                block=block,
            )
        data = self.input.read(next_size)
        if len(data) < next_size:
            self.fail(f"file ends inside a packet payload ({len(data)} of {next_size} bytes)", off, block=block)
        try:
            out = self._inflate(comp, data, want)
        except (zlib.error, ValueError) as exc:
            self.fail(f"{'zlib' if comp == _ZLIB else 'zstd'} payload does not decompress: {exc}", off, block=block)
        if len(out) != want:
            self.fail(f"packet size received {len(out)} size expected {want}", off, block=block)
        return out, next_size

    def _inflate(self, comp: int, data, want: int) -> bytes:
        # One stream per channel, never reset: every packet continues it.
        if comp == _ZLIB:
            if self._zlib is None:
                self._zlib = zlib.decompressobj()
            out = self._zlib.decompress(data, want + 1)
            if self._zlib.unconsumed_tail:
                raise ValueError("payload inflates to more than the packet's pages")
            return out
        import zstandard

        if self._zstd is None:
            self._zstd = zstandard.ZstdDecompressor().decompressobj()
        parts = []
        got = 0
        view = memoryview(data)
        try:
            for i in range(0, len(view), _ZSTD_FEED):
                piece = self._zstd.decompress(view[i : i + _ZSTD_FEED])
                got += len(piece)
                if got > want:
                    raise ValueError("payload inflates to more than the packet's pages")
                parts.append(piece)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from exc
        return b"".join(parts)

    def close(self) -> None:
        self.input.close()


class PacketReader:
    """Packets of one channel file by offset, for random access (the TUI's page
    contents).  A nocomp packet is read where it lies; zlib and zstd packets continue
    one stream per channel, so they are decoded in order from the last packet read,
    or from the start of the file when asked for an earlier one."""

    def __init__(self, path: str, page_size: int, blocks: dict) -> None:
        self.path = path
        self.page_size = page_size
        self.blocks = blocks  # name -> anything with used_length
        self._channel: ChannelFile | None = None
        self._last: MultifdPacket | None = None

    def packet(self, offset: int, flags: int) -> MultifdPacket:
        """The RAM packet at ``offset``; ``flags`` are its flags (for its compression)."""
        if self._last is not None and self._last.offset == offset:
            return self._last
        in_place = flags & g.MULTIFD_COMPRESSION_MASK == _NOCOMP
        ch = self._channel
        if ch is None or in_place or ch.input.offset > offset:
            self.close()
            ch = self._channel = ChannelFile(self.path, self.page_size)
            if in_place:
                ch.input.skip(offset - ch.input.offset)
        while True:
            pkt = ch.next_packet(self.blocks)
            if pkt is None or pkt.offset > offset:
                raise ChannelError(f"no multifd packet starts at offset {offset:#x}", ch.name, offset)
            if pkt.offset == offset:
                self._last = pkt
                return pkt

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._last = None


class MultifdChannels:
    """All channel files of one migration."""

    def __init__(self, paths: Iterable[str], page_size: int) -> None:
        self.channels: list[ChannelFile] = []
        try:
            for p in paths:
                self.channels.append(ChannelFile(os.fspath(p), page_size))
        except BaseException:
            self.close()
            raise
        seen: dict[int, ChannelFile] = {}
        for ch in self.channels:
            if ch.id >= len(self.channels):
                raise ChannelError(
                    f"multifd: received channel id {ch.id} is greater than number of channels {len(self.channels)}",
                    ch.name,
                    24,
                )
            if ch.id in seen:
                raise ChannelError(f"multifd: channel id {ch.id} also in {seen[ch.id].name}", ch.name, 24)
            seen[ch.id] = ch
        uuids = {ch.uuid for ch in self.channels}
        if len(uuids) > 1:
            raise ChannelError(
                "multifd: channels carry different source uuids (not from one migration)", self.channels[-1].name, 8
            )
        self.channels.sort(key=lambda c: c.id)
        self._expect = 0  # next packet_num, when numbering is contiguous
        self.contiguous: bool | None = None
        self.sync_points = 0

    def _next_before_sync(self, ch, blocks: dict, sync_offset: int) -> MultifdPacket:
        """The channel's next packet, which must exist: the sync point has not seen its
        SYNC packet yet."""
        pkt = ch.next_packet(blocks)
        if pkt is None:
            raise ChannelError(
                f"channel {ch.id} ends before the SYNC packet of sync point "
                f"{self.sync_points} (main stream offset 0x{sync_offset:x})",
                ch.name,
                ch.input.offset,
            )
        return pkt

    def epoch(self, blocks: dict, sync_offset: int) -> Iterator[MultifdPacket]:
        """The packets of the next sync point, merged by packet_num: every channel up
        to and including its next SYNC packet."""
        self.sync_points += 1
        heap: list = []
        for ch in self.channels:
            pkt = self._next_before_sync(ch, blocks, sync_offset)
            heap.append((pkt.packet_num, ch.id, pkt))
        heapq.heapify(heap)
        while heap:
            num, cid, pkt = heapq.heappop(heap)
            self._check_number(pkt)
            yield pkt
            if pkt.sync:
                continue  # this channel is done for this sync point
            ch = self.channels[cid]
            nxt = self._next_before_sync(ch, blocks, sync_offset)
            heapq.heappush(heap, (nxt.packet_num, cid, nxt))

    def _check_number(self, pkt: MultifdPacket) -> None:
        # QEMU 9.0+ numbers packets from one atomic counter: 0, 1, 2, ... across all
        # channels, SYNC packets included (their pages_alloc is 0).  QEMU 7.2 took the
        # number in the main thread and a SYNC could overwrite a pending packet's
        # number: duplicates and holes are normal there, only order is checked.
        if self.contiguous is None:
            ch0 = self.channels[0]
            self.contiguous = ch0.first_sync_alloc == 0
            self._expect = 0
        if not self.contiguous:
            return
        if pkt.packet_num != self._expect:
            what = "duplicate" if pkt.packet_num < self._expect else "gap"
            raise ChannelError(
                f"packet_num {what}: expected packet {self._expect}, got {pkt.packet_num}", pkt.file, pkt.offset
            )
        self._expect += 1

    def leftover(self, blocks: dict) -> list[MultifdPacket]:
        """Packets after the last sync point, in packet_num order."""
        rest = []
        for ch in self.channels:
            pkt = ch.next_packet(blocks)
            while pkt is not None:
                rest.append(pkt)
                pkt = ch.next_packet(blocks)
        rest.sort(key=lambda p: (p.packet_num, p.channel))
        return rest

    def stats(self) -> list[dict]:
        return [
            {
                "file": ch.path,
                "id": ch.id,
                "packets": ch.packets,
                "sync_packets": ch.sync_packets,
                "normal_pages": ch.normal_pages,
                "zero_pages": ch.zero_pages,
                "device_state_packets": ch.device_state_packets,
                "compression": g.MULTIFD_COMPRESSION_NAMES.get(ch.compression, "?")
                if ch.compression is not None
                else None,
            }
            for ch in self.channels
        ]

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


def with_channels(events: Iterable, channel_paths, decoder, stats: list | None = None) -> Iterator:
    """The main stream's events with the channels' packets inserted at each sync
    point.  Without channel files, warns (once) when the main stream shows that pages
    travelled on multifd channels.  ``stats`` (a list) receives per-channel counts."""
    paths = [os.fspath(p) for p in channel_paths or ()]
    chans: MultifdChannels | None = None
    sync_on_eos: bool | None = None  # decided at the first RAM EOS
    flushes = 0
    try:
        for ev in events:
            yield ev
            if type(ev) is not RamMarker:
                if chans is None and paths and type(ev) is RamBlockList:
                    chans = MultifdChannels(paths, decoder.page_size)
                continue
            kind = ev.flags & ~RAM_CONTINUE
            if kind == RAM_MULTIFD_FLUSH:
                flushes += 1
                if sync_on_eos is None:
                    sync_on_eos = False
                if not paths and flushes == 1:
                    decoder.warnings.append(
                        (
                            ev.offset,
                            "the stream used multifd (MULTIFD_FLUSH records): its pages "
                            "travelled on channel connections; pass them with --channel",
                        )
                    )
                is_sync = not sync_on_eos
            elif kind == RAM_EOS:
                if sync_on_eos is None:
                    sync_on_eos = flushes == 0
                is_sync = sync_on_eos
            else:
                continue
            if is_sync and chans is not None:
                n = 0
                for pkt in chans.epoch(decoder.blocks, ev.offset):
                    n += 1
                    yield pkt
                yield MultifdSync(ev.offset, chans.sync_points, n)
        if chans is not None:
            rest = chans.leftover(decoder.blocks)
            if rest:
                decoder.warnings.append(
                    (
                        decoder.offset,
                        f"{len(rest)} multifd packets after the last sync point (applied in packet_num order)",
                    )
                )
                yield from rest
    finally:
        if chans is not None:
            if stats is not None:
                stats.extend(chans.stats())
            chans.close()
