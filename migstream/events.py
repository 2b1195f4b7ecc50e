"""Event values produced by the decoder.

Every event carries ``offset``: the byte offset in the stream of the first byte it
describes.  Payload fields are memoryviews into the decoder's input; they stay valid
(the memory is never reused) but keep that input alive, so copy what you keep.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from .record import field
from .record import record
from .wire.grammar import BLOCK_SECTOR_BITS
from .wire.grammar import MULTIFD_COMPRESSION_MASK
from .wire.grammar import MULTIFD_COMPRESSION_NAMES
from .wire.grammar import RAM_CONTINUE
from .wire.grammar import RAM_PAGE
from .wire.grammar import BlockFlag
from .wire.grammar import Command
from .wire.grammar import DirtyBitmapFlag
from .wire.grammar import RamFlag
from .wire.grammar import SectionType


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: ``StreamDecoder.next_event()`` returns this when it needs more input.
NEED_DATA = _Sentinel("NEED_DATA")


def _set_member_names(flag_type: type[enum.IntFlag], flags: int) -> list[str]:
    """Names of the members of ``flag_type`` set in ``flags``, in definition order."""
    # Iterating a flag class yields its single-bit members, and every member has a
    # name; typeshed types ``name`` as ``str | None`` for values that are no member.
    return [member.name for member in flag_type if flags & member and member.name is not None]


def flag_names(flags: int) -> str:
    """``0x28`` -> ``"PAGE|CONTINUE"``: the one place flags get their names."""
    names = _set_member_names(RamFlag, flags & ~RamFlag.CONTINUE)
    rest = flags & ~sum(RamFlag)
    if flags & RamFlag.CONTINUE:
        names.append("CONTINUE")
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def dirty_bitmap_flag_names(flags: int) -> str:
    """Dirty-bitmap migration flags by name: ``0x1c`` -> ``"BITMAP_NAME|DEVICE_NAME|START"``."""
    return "|".join(_set_member_names(DirtyBitmapFlag, flags)) or "0"


def block_flag_names(flags: int) -> str:
    """Block migration flags by name: ``0x09`` -> ``"DEVICE_BLOCK|ZERO_BLOCK"``."""
    names = _set_member_names(BlockFlag, flags)
    rest = flags & ~sum(BlockFlag)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


@record
class FileHeader:
    offset: int
    version: int


@record
class Configuration:
    offset: int
    machine: str
    target_page_bits: int | None = None
    capabilities: tuple[str, ...] = ()
    uuid: bytes | None = None
    #: The section's payload (after the 0x07 byte): what the VMDESCRIPTION's
    #: "configuration" entry (QEMU 8.2+) describes.
    data: bytes = field(default=b"", repr=False, compare=False)


@record
class SectionStart:
    """A section header: START/FULL carry the idstr, PART/END refer back to it."""

    offset: int
    type: SectionType
    section_id: int
    idstr: str
    instance_id: int
    version_id: int


@record
class SectionEnd:
    """The end of a section payload; ``footer`` tells whether a 0x7e footer followed."""

    offset: int
    section_id: int
    idstr: str
    footer: bool


@record
class RamBlock:
    name: str
    used_length: int
    page_size: int | None = None  # postcopy hugepage extra
    addr: int | None = None  # x-ignore-shared guest-physical address


@record
class RamBlockList:
    """The MEM_SIZE record: every RAM block and its used length."""

    offset: int
    total: int
    blocks: tuple[RamBlock, ...]


@record
class PageRecord:
    """One RAM record that targets a page (ZERO, PAGE, XBZRLE, COMPRESS_PAGE)."""

    offset: int
    flags: int
    block: str
    addr: int  # offset inside the block
    payload_offset: int
    data: memoryview  # PAGE: the page; XBZRLE: the delta; COMPRESS_PAGE: zlib bytes
    fill: int = 0  # ZERO: the fill byte
    encoding: int = 0  # XBZRLE: the encoding byte

    @property
    def kind(self) -> RamFlag:
        return RamFlag(self.flags & ~RamFlag.CONTINUE)

    @property
    def payload_size(self) -> int:
        """Bytes of payload on the wire (length prefixes included)."""
        return _payload_wire_size(self)

    @property
    def size(self) -> int:
        """Bytes this record occupies in the stream."""
        return self.payload_offset - self.offset + _payload_wire_size(self)


def _payload_wire_size(rec: PageRecord) -> int:
    kind = rec.flags & ~RamFlag.CONTINUE
    if kind == RamFlag.ZERO:
        return 1
    if kind == RamFlag.XBZRLE:
        return 3 + len(rec.data)
    if kind == RamFlag.COMPRESS_PAGE:
        return 4 + len(rec.data)
    return len(rec.data)


@record
class PageRun:
    """``count`` consecutive CONTINUE records, each PAGE or ZERO, for consecutive
    pages of one block: record *i* starts at ``offset + starts[i]``, targets
    ``addr + i * page_size`` and is of kind ``kinds[i]`` (RamFlag.PAGE or ZERO).

    This is how the fast path reports the bulk of a stream (the bulk stage sends
    every page in order, each as ZERO or PAGE); ``records()`` expands it.
    """

    offset: int
    block: str
    addr: int  # offset inside the block of the first page
    count: int
    page_size: int
    data: memoryview  # the run's bytes in the stream
    starts: Sequence[int]  # record offsets inside data
    kinds: bytes  # one RamFlag value per record

    def _end(self, i: int) -> int:
        # Where record i ends in data: where the next one starts.
        return self.starts[i + 1] if i + 1 < self.count else len(self.data)

    def page(self, i: int) -> memoryview:
        """The payload of record i (a PAGE record): the page that ends the record."""
        end = self._end(i)
        return self.data[end - self.page_size : end]

    def fill(self, i: int) -> int:
        """The fill byte of record i (a ZERO record): the byte that ends the record."""
        return self.data[self._end(i) - 1]

    def record_bytes(self, kind: int) -> int:
        """Stream bytes of the run's records of ``kind`` (a fixed-size kind: all alike)."""
        i = self.kinds.find(kind)
        if i < 0:
            return 0
        return self.kinds.count(kind) * (self._end(i) - self.starts[i])

    def count_of(self, kind: int) -> int:
        return self.kinds.count(kind)

    def records(self) -> Iterator[PageRecord]:
        empty = memoryview(b"")
        for i in range(self.count):
            off = self.offset + self.starts[i]
            addr = self.addr + i * self.page_size
            kind = self.kinds[i]
            end = self.offset + self._end(i)
            if kind == RAM_PAGE:
                yield PageRecord(off, kind | RAM_CONTINUE, self.block, addr, end - self.page_size, self.page(i))
            else:
                yield PageRecord(off, kind | RAM_CONTINUE, self.block, addr, end - 1, empty, self.fill(i))


@record
class RamMarker:
    """A RAM record without a page: EOS, MULTIFD_FLUSH or HOOK."""

    offset: int
    flags: int

    @property
    def kind(self) -> RamFlag:
        return RamFlag(self.flags & ~RamFlag.CONTINUE)


@record
class CommandEvent:
    offset: int
    cmd: int
    length: int
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        try:
            return Command(self.cmd).name
        except ValueError:
            return f"0x{self.cmd:x}"


@record
class PackageEnd:
    """The end of a PACKAGED command's nested stream."""

    offset: int
    length: int


@record
class DeviceState:
    """The payload of a non-RAM section, framed but not interpreted here."""

    offset: int
    section_id: int
    idstr: str
    instance_id: int
    length: int
    framing: str  # "description" (JSON sizes), "footer-scan", "htab"
    #: The payload bytes (a view into the decoder's input; copy what you keep).
    data: memoryview = field(default=memoryview(b""), repr=False, compare=False)
    #: START/PART/END for iterative (live) sections, FULL for the rest.
    section_type: SectionType = SectionType.FULL


@record
class BlockRecord:
    """A record of the "block" section (block migration, migration/block.c): a chunk
    of a disk (DEVICE_BLOCK: ``data``, or none with ZERO_BLOCK), a PROGRESS
    percentage, or EOS."""

    offset: int
    section_id: int
    flags: int
    value: int  # the first sector of a chunk; the percentage of PROGRESS
    device: str | None = None
    #: The chunk's bytes (a view into the decoder's input; copy what you keep).
    data: memoryview = field(default=memoryview(b""), repr=False, compare=False)

    @property
    def is_chunk(self) -> bool:
        return bool(self.flags & BlockFlag.DEVICE_BLOCK)

    @property
    def is_zero(self) -> bool:
        return bool(self.flags & BlockFlag.ZERO_BLOCK)

    @property
    def disk_offset(self) -> int:
        return self.value << BLOCK_SECTOR_BITS

    def row(self) -> dict:
        return {
            "offset": self.offset,
            "event": "block",
            "flags": self.flags,
            "flag_names": block_flag_names(self.flags),
            "device": self.device,
            "disk_offset": self.disk_offset if self.is_chunk else None,
            "progress": self.value if self.flags & BlockFlag.PROGRESS else None,
            "data_size": len(self.data),
        }


@record
class DirtyBitmapRecord:
    """A record of the "dirty-bitmap" section (capability dirty-bitmaps,
    migration/block-dirty-bitmap.c): a bitmap's START (granularity, bitmap flags),
    its COMPLETE, a range of its BITS (``data``: serialized bits; none with ZEROES),
    or EOS.  ``node`` and ``bitmap`` are None when the record omits them (same as
    the previous record's)."""

    offset: int
    section_id: int
    flags: int
    node: str | None = None
    bitmap: str | None = None
    granularity: int | None = None
    bitmap_flags: int | None = None
    start_sector: int | None = None
    nr_sectors: int | None = None
    data: memoryview = field(default=memoryview(b""), repr=False, compare=False)

    def row(self) -> dict:
        return {
            "offset": self.offset,
            "event": "dirty_bitmap",
            "flags": self.flags,
            "flag_names": dirty_bitmap_flag_names(self.flags),
            "node": self.node,
            "bitmap": self.bitmap,
            "granularity": self.granularity,
            "bitmap_flags": self.bitmap_flags,
            "start_sector": self.start_sector,
            "nr_sectors": self.nr_sectors,
            "data_size": len(self.data),
        }


@record
class EndOfStream:
    """QEMU_VM_EOF, at nesting level 0."""

    offset: int


@record
class VmDescription:
    offset: int
    json: bytes


@record
class Undecoded:
    """Decoding stopped before the end of the input, without a format error:
    the rest is device state that cannot be framed without a JSON description."""

    offset: int
    reason: str


# --- mapped-ram and multifd (QEMU 9.0+ file: migration; multifd channels) ----------


@record
class MappedRamBlock:
    """A MEM_SIZE block entry of a mapped-ram stream: the block and its
    MappedRamHeader.  ``bitmap`` (host-long words, little-endian bit order) says which
    pages of the region ``pages_offset .. pages_offset + used_length`` hold data."""

    offset: int
    name: str
    used_length: int
    addr: int | None  # x-ignore-shared guest-physical address
    version: int
    page_size: int
    bitmap_offset: int
    pages_offset: int  # 0 for an x-ignore-shared block (no region)
    bitmap: bytes

    @property
    def pages_written(self) -> int:
        return int.from_bytes(self.bitmap, "little").bit_count()

    def row(self) -> dict:
        return {
            "offset": self.offset,
            "event": "mapped_ram_block",
            "block": self.name,
            "length": self.used_length,
            "version": self.version,
            "page_size": self.page_size,
            "bitmap_offset": self.bitmap_offset,
            "pages_offset": self.pages_offset,
            "pages_written": self.pages_written,
        }


@record
class MappedRamPages:
    """A stretch of a block's page region as it passes by: block offsets
    ``addr .. addr + len(data)``.  ``data`` is a view into the input (an mmap for
    files); only pages whose bitmap bit is set may be read, the rest are holes."""

    offset: int
    block: str
    addr: int
    data: memoryview

    def row(self) -> dict:
        return {
            "offset": self.offset,
            "event": "mapped_ram_pages",
            "block": self.block,
            "addr": self.addr,
            "length": len(self.data),
        }


@record
class MultifdPacket:
    """One RAM packet of a multifd channel, decoded: ``pages`` holds the normal
    pages (decompressed) in ``normal`` offset order; ``zero`` lists pages to zero.
    ``offset`` is the packet's offset in its channel file."""

    offset: int
    channel: int
    file: str
    packet_num: int
    flags: int
    block: str
    normal: Sequence[int]
    zero: Sequence[int]
    pages: memoryview | bytes
    page_size: int
    payload_size: int  # bytes of payload on the wire

    @property
    def sync(self) -> bool:
        return bool(self.flags & 0x01)

    def page(self, i: int):
        return self.pages[i * self.page_size : (i + 1) * self.page_size]

    def row(self) -> dict:
        return {
            "offset": self.offset,
            "event": "multifd_packet",
            "channel": self.channel,
            "file": self.file,
            "packet_num": self.packet_num,
            "flags": self.flags,
            "sync": self.sync,
            "compression": MULTIFD_COMPRESSION_NAMES.get(self.flags & MULTIFD_COMPRESSION_MASK, "?"),
            "block": self.block,
            "normal_pages": len(self.normal),
            "zero_pages": len(self.zero),
            "payload_size": self.payload_size,
        }


@record
class MultifdSync:
    """Every channel reached its SYNC packet for one sync point of the main stream
    (a MULTIFD_FLUSH record, or a RAM EOS for QEMU < 8.0 / flush-after-each-section)."""

    offset: int  # of the main-stream record
    index: int  # sync points so far, from 1
    packets: int  # packets applied for this sync point

    def row(self) -> dict:
        return {"offset": self.offset, "event": "multifd_sync", "index": self.index, "packets": self.packets}
