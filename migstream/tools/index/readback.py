"""Read-back for the detail pane: a row's element read again from the stream
(``os.pread`` on the file or the spool) and parsed, a page's content rebuilt from
the records that sent it, a multifd page read from its channel file.

``RecordReadBack`` is a base of ``StreamIndex`` (scan.py): its methods read the
index's rows and tables, which the scan fills.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from construct import ConstructError

from ...containers.qcow2 import VmStateReader
from ...decode.pages import apply_page
from ...errors import MigstreamError
from ...errors import StreamError
from ...events import Configuration
from ...events import block_flag_names
from ...events import dirty_bitmap_flag_names
from ...wire import grammar as g
from ...wire.grammar import RAM_COMPRESS_PAGE
from ...wire.grammar import RAM_CONTINUE
from ...wire.grammar import RAM_PAGE
from ...wire.grammar import RAM_XBZRLE
from ...wire.grammar import RAM_ZERO
from ...wire.grammar import Command
from ...wire.grammar import SectionType
from .pagestate import MULTIFD_ROW
from .rows import BlockInfo
from .rows import MultifdPacketInfo
from .rows import RowKind
from .rows import Rows
from .rows import SectionInfo


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


class RecordReadBack:
    """Reading rows back from the stream; what it needs of the index is declared
    here and provided by ``StreamIndex``."""

    page_size: int | None
    blocks: list[BlockInfo]
    channels: list[str]
    bytes_done: int
    version: int | None
    configuration: Configuration | None
    undecoded: str | None
    _fd: int
    _state_reader: VmStateReader | None  # a qcow2 snapshot's state, read through its L1 table
    _packet_readers: dict
    #: Where the stream starts in the file behind ``_fd`` (an uncompressed libvirt save image).
    _read_base: int = 0

    def rows(self) -> Rows:
        raise NotImplementedError

    def section_of_row(self, row: int) -> SectionInfo | None:
        raise NotImplementedError

    def packet_of_row(self, row: int) -> tuple[int, int, MultifdPacketInfo] | None:
        raise NotImplementedError

    def rows_touching(self, block: int, page: int, upto: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes of the stream at stream offset ``offset``."""
        if self._state_reader is not None:
            return bytes(self._state_reader.pread(n, offset))
        return os.pread(self._fd, n, offset + self._read_base)

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
        elif kind == RowKind.SECTION and sec is not None and sec.type is not None:
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
                what = "normal page" if flags & RAM_PAGE else "zero page"
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
        elif head.kind == RAM_ZERO:
            det.fill = payload.fill
            data = bytes([payload.fill])
        else:
            data = bytes(payload.data)
            if head.kind == RAM_COMPRESS_PAGE:
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
            return (self.page_size or 4096) if d.flags & RAM_PAGE else 0
        if d.kind == RowKind.PAGE:
            base = d.flags & ~RAM_CONTINUE
            n = len(d.payload)
            return n + (3 if base == RAM_XBZRLE else 4 if base == RAM_COMPRESS_PAGE else 0)
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
            if int(r.flags[hist[i]]) & ~RAM_CONTINUE != RAM_XBZRLE:
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
                apply_page(page, d.flags & ~RAM_CONTINUE, d.payload, d.fill or 0, offset=d.offset)
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
        from ...containers.multifd import PacketReader

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

    def __init__(self, index: RecordReadBack, offset: int) -> None:
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
