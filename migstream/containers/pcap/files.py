"""libpcap and pcapng files: where each captured packet's bytes are in the file.

Both formats are read from a read-only map of the file; nothing here copies packet
data.  ``packets()`` yields ``(linktype, data_offset, captured_length, wire_length)``
per packet; the TCP layer keeps only file offsets (see tcp.py).

libpcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html): a 24-byte
header, magic 0xa1b2c3d4 (microsecond) or 0xa1b23c4d (nanosecond) in the writer's byte
order, then records of a 16-byte header (ts_sec, ts_frac, caplen, len) and caplen bytes.
pcapng (draft-ietf-opsawg-pcapng): blocks of (type, total length, body, total length);
a Section Header Block (byte-order magic 0x1a2b3c4d) starts each section and resets its
interfaces; Interface Description Blocks give each interface's link type; packets come
in Enhanced (6), Simple (3) and obsolete Packet (2) blocks.  Other blocks are skipped.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any
from typing import BinaryIO

from ...errors import StreamError
from ...errors import UsageError

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB, _PCAPNG_OPB, _PCAPNG_SPB, _PCAPNG_EPB = 1, 2, 3, 6
#: Larger than any snaplen a capture tool writes (tcpdump, dumpcap: 262144); a record
#: claiming more is damage, not a packet.
MAX_PACKET = 1 << 20
#: A pcapng block larger than this is refused (packets are bounded by MAX_PACKET;
#: other blocks, e.g. name resolution, stay far below).
MAX_BLOCK = 16 << 20
#: Interface descriptions per pcapng section (a packet block names its interface in
#: 32 bits; real captures have a few).
MAX_INTERFACES = 1 << 16
#: The map's pages are released behind the reader every this many bytes, so that
#: resident memory stays flat however large the capture (as sources.py does).
RELEASE = 16 << 20


class CaptureError(StreamError):
    """A fault in a capture file; ``offset`` is a file offset."""

    def __init__(self, message: str, file: str, offset: int, decompressed: bool = False) -> None:
        super().__init__(message, offset)
        self.file = file
        self.decompressed = decompressed  # offset is in the decompressed bytes of a compressed capture

    def __str__(self) -> str:
        where = "offset 0x{:x} of its decompressed bytes" if self.decompressed else "file offset 0x{:x}"
        return f"error in capture {self.file} at {where.format(self.offset)}: {self.message}"


def capture_kind(head: bytes) -> str | None:
    """ "pcap", "pcapng" or None from a file's first bytes."""
    if len(head) >= 4:
        le, be = struct.unpack_from("<I", head)[0], struct.unpack_from(">I", head)[0]
        if PCAP_MAGIC_US in (le, be) or PCAP_MAGIC_NS in (le, be):
            return "pcap"
        if le == PCAPNG_SHB:
            return "pcapng"
    return None


class CaptureFile:
    """A libpcap or pcapng file, mapped read-only.  ``data`` is the map (a memoryview);
    ``fault`` is set by ``packets()`` when the file ends inside a record or holds a
    damaged block: the packets before it are still delivered."""

    def __init__(self, path: str, opened: BinaryIO | None = None) -> None:
        """``opened``: the capture's bytes in an already open file (a compressed
        capture decompressed into an unnamed temporary file); ``path`` names it."""
        self.path = path
        self.decompressed = opened is not None
        try:
            f = opened if opened is not None else open(path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot open {path}: {exc.strerror}") from exc
        with f:
            size = os.fstat(f.fileno()).st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.data = memoryview(self._map) if self._map is not None else memoryview(b"")
        self.size = size
        self.kind = capture_kind(bytes(self.data[:4]))
        if self.kind is None:
            raise CaptureError("not a libpcap or pcapng file", path, 0)
        self.linktypes: set[int] = set()
        self.nanosecond = False
        self.byte_order = "<"
        self.packet_count = 0
        self.fault: CaptureError | None = None

    def release(self, start: int, end: int) -> None:
        """Drop the map's pages in [start, end) from memory (they fault in again if read)."""
        if self._map is None:
            return
        lo = start // mmap.PAGESIZE * mmap.PAGESIZE
        hi = min(end, self.size) // mmap.PAGESIZE * mmap.PAGESIZE
        if hi > lo:
            try:
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):
                pass

    def packets(self) -> Iterator[tuple[int, int, int, int]]:
        """(linktype, data offset, captured length, wire length) of every packet."""
        if self.kind == "pcap":
            return self._pcap()
        return self._pcapng()

    def _fail(self, message: str, offset: int) -> None:
        self.fault = CaptureError(message, self.path, offset, self.decompressed)

    def _pcap(self) -> Iterator[tuple[int, int, int, int]]:
        data, size = self.data, self.size
        if size < 24:
            self._fail(f"file ends inside the 24-byte libpcap header ({size} bytes)", 0)
            return
        magic = struct.unpack_from("<I", data)[0]
        bo = "<" if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
        self.byte_order = bo
        magic, _major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(bo + "IHHiIII", data)
        self.nanosecond = magic == PCAP_MAGIC_NS
        link = network & 0xFFFF  # the upper bits carry FCS information
        self.linktypes.add(link)
        record = struct.Struct(bo + "8xII").unpack_from
        pos = 24
        count = 0
        released = 0
        try:
            while pos + 16 <= size:
                caplen, wirelen = record(data, pos)
                if caplen > MAX_PACKET:
                    self._fail(f"packet record claims {caplen} bytes (more than {MAX_PACKET})", pos)
                    return
                end = pos + 16 + caplen
                if end > size:
                    left = size - pos - 16
                    self._fail(f"file ends inside a packet record ({caplen} bytes claimed, {left} left)", pos)
                    return
                count += 1
                yield link, pos + 16, caplen, wirelen
                pos = end
                if pos >= released + RELEASE:
                    self.release(released, pos)
                    released = pos
            if pos != size:
                self._fail(f"file ends inside a packet record header ({size - pos} of 16 bytes)", pos)
        finally:
            self.packet_count = count

    def _pcapng(self) -> Iterator[tuple[int, int, int, int]]:
        data, size = self.data, self.size
        pos = 0
        bo = "<"
        links: list[tuple[int, int]] = []  # (linktype, snaplen) per interface of the section
        count = 0
        released = 0
        try:
            while pos < size:
                if pos + 12 > size:
                    self._fail(f"file ends inside a pcapng block header ({size - pos} bytes left)", pos)
                    return
                btype = struct.unpack_from(bo + "I", data, pos)[0]
                if btype == PCAPNG_SHB:
                    order = bytes(data[pos + 8 : pos + 12])
                    if order == b"\x4d\x3c\x2b\x1a":
                        bo = "<"
                    elif order == b"\x1a\x2b\x3c\x4d":
                        bo = ">"
                    else:
                        self._fail(f"section header with byte-order magic {order.hex()}", pos)
                        return
                    self.byte_order = bo
                    links = []
                blen = struct.unpack_from(bo + "I", data, pos + 4)[0]
                if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                    self._fail(f"pcapng block of type {btype:#x} has length {blen}", pos)
                    return
                if pos + blen > size:
                    self._fail(f"file ends inside a pcapng block ({blen} bytes claimed, {size - pos} left)", pos)
                    return
                if struct.unpack_from(bo + "I", data, pos + blen - 4)[0] != blen:
                    self._fail(f"pcapng block of type {btype:#x}: trailing length differs from {blen}", pos)
                    return
                if btype == _PCAPNG_IDB:
                    if blen < 20:
                        self._fail(f"interface description block of {blen} bytes", pos)
                        return
                    if len(links) >= MAX_INTERFACES:
                        self._fail(f"more than {MAX_INTERFACES} interfaces in one section", pos)
                        return
                    link, snaplen = struct.unpack_from(bo + "H2xI", data, pos + 8)
                    links.append((link, snaplen))
                    self.linktypes.add(link)
                elif btype in (_PCAPNG_EPB, _PCAPNG_OPB, _PCAPNG_SPB):
                    if btype == _PCAPNG_SPB:
                        iface, head = 0, 12
                        (wirelen,) = struct.unpack_from(bo + "I", data, pos + 8)
                        caplen = min(wirelen, blen - 16)
                        if links and links[0][1]:
                            caplen = min(caplen, links[0][1])
                    else:
                        if btype == _PCAPNG_EPB:
                            iface, caplen, wirelen = struct.unpack_from(bo + "I8xII", data, pos + 8)
                        else:
                            iface, caplen, wirelen = struct.unpack_from(bo + "H10xII", data, pos + 8)
                        head = 28
                    if blen < head + 4 or head + caplen + 4 > blen:
                        self._fail(f"packet block: {caplen} captured bytes do not fit its length {blen}", pos)
                        return
                    if iface >= len(links):
                        self._fail(f"packet block names interface {iface}, the section has {len(links)}", pos)
                        return
                    count += 1
                    yield links[iface][0], pos + head, caplen, wirelen
                pos += blen
                if pos >= released + RELEASE:
                    self.release(released, pos)
                    released = pos
        finally:
            self.packet_count = count

    def close(self) -> None:
        # Views into the map may still be alive; the map is closed by GC then.
        self._map = None


class AmbiguousCapture(UsageError):
    """A capture with several migrations and none chosen; ``capture`` lists them."""

    def __init__(self, message: str, capture: Any) -> None:  # a migrations.PacketCapture
        super().__init__(message)
        self.capture = capture


def split_selector(path: str) -> tuple[str, int | None]:
    """``capture.pcap#2`` -> (``capture.pcap``, 2); a path that exists is taken whole.
    (``#``, not ``@``: ``diff`` reads ``STREAM@N`` as "after N RAM iterations".)"""
    if "#" in path and not os.path.exists(path):
        base, _, sel = path.rpartition("#")
        if sel.isdigit() and os.path.exists(base):
            return base, int(sel)
    return path, None
