"""The wire format of the QEMU migration stream, declared once with construct.

This module is the only place where the byte layout is written.  The decoder's
fast path (``fastpath.py``) derives its sizes and length-prefix readers from these
declarations, and encoders build records with them.  Loader *rules* (which values
QEMU accepts) live in the decoder; this module only says where the bytes are.

Everything on the main channel is big-endian (``qemu_put_be16/32/64``).
References are to QEMU's source tree: migration/savevm.{c,h}, migration/ram.{c,h},
migration/vmstate.c.  Parameters that the stream does not carry in-band are passed
as construct parse parameters (``this._params``): ``page_size`` (TARGET_PAGE_SIZE),
``ignore_shared`` (capability x-ignore-shared: MEM_SIZE carries block addresses) and
``postcopy_hugepages`` (postcopy was advised with a page-size summary larger than the
target page: MEM_SIZE may carry per-block page sizes).
"""

from __future__ import annotations

import enum

from construct import Array
from construct import Bytes
from construct import Computed
from construct import Const
from construct import Construct
from construct import Error
from construct import FixedSized
from construct import GreedyBytes
from construct import GreedyRange
from construct import If
from construct import Int8ub
from construct import Int16ub
from construct import Int32ub
from construct import Int64ub
from construct import Optional
from construct import PascalString
from construct import Pass
from construct import Prefixed
from construct import PrefixedArray
from construct import RepeatUntil
from construct import Struct
from construct import Switch
from construct import this

from .limits import MAX_RAM_BLOCKS

# --- constants (migration/savevm.h) -------------------------------------------------

QEMU_VM_FILE_MAGIC = 0x5145564D  # "QEVM"
QEMU_VM_FILE_VERSION_COMPAT = 2
QEMU_VM_FILE_VERSION = 3
QEMU_VM_PING_PACKAGED_LOADED = 0x42
RAM_SECTION_VERSION = 4  # register_savevm_live("ram", 0, 4, ...)
XBZRLE_ENCODING_FLAG = 0x01  # ENCODING_FLAG_XBZRLE, migration/ram.c


class SectionType(enum.IntEnum):
    """The byte that introduces every top-level element (QEMU_VM_*)."""

    EOF = 0x00
    START = 0x01
    PART = 0x02
    END = 0x03
    FULL = 0x04
    SUBSECTION = 0x05  # only inside vmstate payloads
    VMDESCRIPTION = 0x06
    CONFIGURATION = 0x07
    COMMAND = 0x08
    FOOTER = 0x7E


class Command(enum.IntEnum):
    """QEMU_VM_COMMAND numbers (enum qemu_vm_cmd, migration/savevm.c)."""

    INVALID = 0
    OPEN_RETURN_PATH = 1
    PING = 2
    POSTCOPY_ADVISE = 3
    POSTCOPY_LISTEN = 4
    POSTCOPY_RUN = 5
    POSTCOPY_RAM_DISCARD = 6
    PACKAGED = 7
    ENABLE_COLO = 8
    POSTCOPY_RESUME = 9
    RECV_BITMAP = 10
    SWITCHOVER_START = 11


class RamFlag(enum.IntFlag):
    """RAM_SAVE_FLAG_* bits in the low bits of each RAM record header (ram.h).

    All of them stay below 0x400 because targets with 1 KiB pages exist.
    """

    FULL = 0x01  # obsolete since 2009, never emitted; an error on load
    ZERO = 0x02  # was RAM_SAVE_FLAG_COMPRESS: a page filled with one byte
    MEM_SIZE = 0x04
    PAGE = 0x08
    EOS = 0x10
    CONTINUE = 0x20
    XBZRLE = 0x40
    HOOK = 0x80  # RDMA only
    COMPRESS_PAGE = 0x100  # multi-thread zlib, QEMU 2.4 - 9.0
    MULTIFD_FLUSH = 0x200  # QEMU 8.0+


# The record kinds as plain ints for the loops that run once per record, where
# IntFlag arithmetic costs microseconds: every module takes them from here.
RAM_ZERO = int(RamFlag.ZERO)
RAM_PAGE = int(RamFlag.PAGE)
RAM_EOS = int(RamFlag.EOS)
RAM_CONTINUE = int(RamFlag.CONTINUE)
RAM_XBZRLE = int(RamFlag.XBZRLE)
RAM_COMPRESS_PAGE = int(RamFlag.COMPRESS_PAGE)
RAM_MULTIFD_FLUSH = int(RamFlag.MULTIFD_FLUSH)


#: Record kinds that carry a page and therefore a block name unless CONTINUE is set
#: (save_page_header / ram_block_from_stream).
PAGE_KINDS = frozenset({RamFlag.ZERO, RamFlag.PAGE, RamFlag.XBZRLE, RamFlag.COMPRESS_PAGE})
#: Record kinds the loader accepts; anything else is "Unknown combination of
#: migration flags".
RECORD_KINDS = PAGE_KINDS | {RamFlag.MEM_SIZE, RamFlag.EOS, RamFlag.HOOK, RamFlag.MULTIFD_FLUSH}
#: Kind bits that may appear together with CONTINUE.
ANY_FLAG_MASK = 0x3FF

# --- the file and its sections ----------------------------------------------------

#: u8 length + bytes, no NUL (qemu_get_counted_string).  latin-1 keeps every byte.
IdStr = PascalString(Int8ub, "latin-1")

FileHeader = Struct(
    "magic" / Int32ub,
    "version" / Int32ub,
)

#: START and FULL: save_section_header.
SectionStartHeader = Struct(
    "section_id" / Int32ub,
    "idstr" / IdStr,
    "instance_id" / Int32ub,
    "version_id" / Int32ub,
)

#: PART and END refer back to the section id of their START.
SectionPartHeader = Struct(
    "section_id" / Int32ub,
)

#: Follows the 0x7e byte after every section payload when the machine type sends
#: footers (check_section_footer).
SectionFooter = Struct(
    "section_id" / Int32ub,
)

# The configuration section (vmstate_configuration, savevm.c): machine name and
# optional subsections, each introduced by QEMU_VM_SUBSECTION.
ConfigSubsection = Struct(
    "marker" / Const(bytes([SectionType.SUBSECTION])),
    "name" / IdStr,
    "version_id" / Int32ub,
    "body"
    / Switch(
        this.name,
        {
            "configuration/target-page-bits": Struct("target_page_bits" / Int32ub),
            "configuration/capabilities": Struct("capabilities" / PrefixedArray(Int32ub, IdStr)),
            "configuration/uuid": Struct("uuid" / Bytes(16)),
        },
        default=Error,
    ),
)

Configuration = Struct(
    "machine" / PascalString(Int32ub, "latin-1"),
    "subsections" / GreedyRange(ConfigSubsection),
)

#: VMDESCRIPTION after EOF: be32 length + JSON text.
VmDescription = Struct(
    "json" / Prefixed(Int32ub, GreedyBytes),
)

# QEMU_VM_COMMAND: be16 cmd, be16 len, len bytes (qemu_savevm_command_send).
DiscardRange = Struct("start" / Int64ub, "length" / Int64ub)

COMMAND_PAYLOADS: dict[int, Construct] = {
    Command.PING: Struct("value" / Int32ub),
    # 16 bytes, or 0 for dirty-bitmap-only postcopy.
    Command.POSTCOPY_ADVISE: Struct(
        "ram_pagesize_summary" / Optional(Int64ub),
        "target_page_size" / Optional(Int64ub),
    ),
    Command.POSTCOPY_RAM_DISCARD: Struct(
        "version" / Int8ub,
        "idstr" / IdStr,
        "terminator" / Int8ub,
        "ranges" / GreedyRange(DiscardRange),
    ),
    # The package itself (a nested section stream) follows the command.
    Command.PACKAGED: Struct("length" / Int32ub),
    Command.RECV_BITMAP: Struct("idstr" / IdStr),
}

CommandHeader = Struct(
    "cmd" / Int16ub,
    "length" / Int16ub,
)

CommandElement = Struct(
    *CommandHeader.subcons,
    "payload" / FixedSized(this.length, Struct("body" / Switch(this._.cmd, COMMAND_PAYLOADS, default=GreedyBytes))),
)

# --- block migration: the "block" section (migration/block.c, QEMU 1.0 - 9.0) ------
# Capability "block" (or `migrate -b`) sends whole disks in an iterative section of
# its own: records of be64 (value << 9 | flags), where value is a sector number or a
# progress percentage, until one with EOS.  Removed in QEMU 9.1.

BLOCK_SECTION = "block"
BLOCK_SECTOR_BITS = 9  # BDRV_SECTOR_BITS
BLOCK_CHUNK = 1 << 20  # BLK_MIG_BLOCK_SIZE: every DEVICE_BLOCK record covers this much


class BlockFlag(enum.IntFlag):
    """BLK_MIG_FLAG_* (migration/block.c)."""

    DEVICE_BLOCK = 0x01  # a chunk of a disk: device name, then the chunk unless ZERO_BLOCK
    EOS = 0x02  # the end of this section's records
    PROGRESS = 0x04  # value = percent of the bulk phase done
    ZERO_BLOCK = 0x08  # capability zero-blocks: the chunk is all zero and not sent


def _block_has_data(ctx) -> bool:
    return bool(ctx.flags & BlockFlag.DEVICE_BLOCK) and not ctx.flags & BlockFlag.ZERO_BLOCK


#: A block migration record up to its chunk.
BlockRecordHead = Struct(
    "value_flags" / Int64ub,
    "flags" / Computed(this.value_flags & ((1 << BLOCK_SECTOR_BITS) - 1)),
    "value" / Computed(this.value_flags >> BLOCK_SECTOR_BITS),
    "device" / If(this.flags & BlockFlag.DEVICE_BLOCK, IdStr),
)

BlockRecord = Struct(
    *BlockRecordHead.subcons,
    "data" / If(_block_has_data, Bytes(BLOCK_CHUNK)),
)

# --- dirty bitmaps: the "dirty-bitmap" section (migration/block-dirty-bitmap.c) ---
# Capability dirty-bitmaps migrates the block layer's named dirty bitmaps: records
# of flags (1, 2 or 4 bytes), optional node and bitmap names (omitted when the same
# as the previous record's), then a START (granularity, bitmap flags), a COMPLETE, or
# BITS (a range of sectors and, unless ZEROES, the serialized bits), until EOS.

DIRTY_BITMAP_SECTION = "dirty-bitmap"
#: Proxmox VE's live section (pve-qemu's pbs-state.c, only in its QEMU): the Proxmox
#: Backup Server state, one START section holding be64 length + that many opaque bytes.
PBS_STATE_SECTION = "pbs-state"
#: dirty_bitmap_load_bits refuses bigger buffers (10 * CHUNK_SIZE).
DIRTY_BITMAP_MAX_BUFFER = 10 << 10
#: Bitmap flags of a START that the loader refuses (DIRTY_BITMAP_MIG_START_FLAG_RESERVED_MASK).
DIRTY_BITMAP_START_RESERVED = 0xF8


class DirtyBitmapFlag(enum.IntFlag):
    """DIRTY_BITMAP_MIG_FLAG_* (migration/block-dirty-bitmap.c)."""

    EOS = 0x01
    ZEROES = 0x02  # BITS: the range is all zero, no buffer follows
    BITMAP_NAME = 0x04
    DEVICE_NAME = 0x08  # the node (alias) name
    START = 0x10
    COMPLETE = 0x20
    BITS = 0x40
    EXTRA_FLAGS = 0x80  # one more flags byte follows (and with it set again, two more)


#: qemu_get_bitmap_flags: 1, 2 or 4 bytes.  It keeps the flags in a uint8_t, so
#: after extra bytes the flags are the last byte read (QEMU's senders never send them).
DirtyBitmapFlags = Struct(
    "first" / Int8ub,
    "more"
    / If(
        this.first & DirtyBitmapFlag.EXTRA_FLAGS,
        Struct(
            "second" / Int8ub,
            "last16" / If(this.second & DirtyBitmapFlag.EXTRA_FLAGS, Int16ub),
        ),
    ),
    "value"
    / Computed(
        lambda c: c.first if c.more is None else (c.more.last16 & 0xFF if c.more.last16 is not None else c.more.second)
    ),
)


def _bitmap_bits_record(ctx) -> bool:
    return bool(ctx.flags & DirtyBitmapFlag.BITS) and not ctx.flags & (DirtyBitmapFlag.START | DirtyBitmapFlag.COMPLETE)


#: A dirty-bitmap record up to its serialized bits (the decoder checks the buffer
#: size before it reads the bits).
DirtyBitmapRecordHead = Struct(
    "flag_bytes" / DirtyBitmapFlags,
    "flags" / Computed(this.flag_bytes.value),
    "node" / If(this.flags & DirtyBitmapFlag.DEVICE_NAME, IdStr),
    "bitmap" / If(this.flags & DirtyBitmapFlag.BITMAP_NAME, IdStr),
    "start" / If(this.flags & DirtyBitmapFlag.START, Struct("granularity" / Int32ub, "bitmap_flags" / Int8ub)),
    "bits"
    / If(
        _bitmap_bits_record,
        Struct(
            "start_sector" / Int64ub,
            "nr_sectors" / Int32ub,
            "buffer_size" / If(lambda c: not c._.flags & DirtyBitmapFlag.ZEROES, Int64ub),
        ),
    ),
)

DirtyBitmapRecord = Struct(
    *DirtyBitmapRecordHead.subcons,
    "data" / If(lambda c: c.bits is not None and c.bits.buffer_size is not None, Bytes(this.bits.buffer_size)),
)

# --- the return path (destination -> source; migration.c migrate_send_rp_message) --


class ReturnPathType(enum.IntEnum):
    """mig_rp_message_type (migration/migration.c)."""

    INVALID = 0
    SHUT = 1  # be32 error code (0 = ok): the destination sends nothing more
    PONG = 2  # be32 value of the PING it answers
    REQ_PAGES_ID = 3  # postcopy page request naming the RAM block
    REQ_PAGES = 4  # the same, for the block of the previous request
    RECV_BITMAP = 5  # postcopy recovery
    RESUME_ACK = 6
    SWITCHOVER_ACK = 7  # 8.1+


RETURN_PATH_PAYLOADS = {
    ReturnPathType.SHUT: Struct("value" / Int32ub),
    ReturnPathType.PONG: Struct("value" / Int32ub),
    ReturnPathType.REQ_PAGES_ID: Struct("start" / Int64ub, "length" / Int32ub, "idstr" / IdStr),
    ReturnPathType.REQ_PAGES: Struct("start" / Int64ub, "length" / Int32ub),
    ReturnPathType.RESUME_ACK: Struct("value" / Int32ub),
}

ReturnPathMessage = Struct(
    "type" / Int16ub,
    "length" / Int16ub,
    "payload"
    / FixedSized(this.length, Struct("body" / Switch(this._.type, RETURN_PATH_PAYLOADS, default=GreedyBytes))),
)

# --- the RAM section ("ram", instance 0, version 4) -------------------------------


def _page_size_extra(ctx) -> bool:
    return bool(ctx._params.get("postcopy_hugepages"))


RamBlockEntry = Struct(
    "idstr" / IdStr,
    "used_length" / Int64ub,
    # Only when postcopy was advised and the block's page size differs from the
    # host/target page (hugepage-backed RAM); ram_load_precopy reads it then.
    "page_size" / If(_page_size_extra, Int64ub),
    # Capability x-ignore-shared: the block's guest-physical address.
    "addr" / If(lambda ctx: bool(ctx._params.get("ignore_shared")), Int64ub),
)


def _block_list_done(obj, blocks, ctx) -> bool:
    # The loader subtracts each used_length from the announced total until it
    # reaches zero (ram_load_precopy, RAM_SAVE_FLAG_MEM_SIZE).  The running sum
    # lives in the context (summing the list each time is quadratic), and a
    # hostile list stops at MAX_RAM_BLOCKS entries (the decoder then reports it).
    covered = (ctx.get("_covered", 0) if len(blocks) > 1 else 0) + blocks[-1].used_length
    ctx["_covered"] = covered
    return covered >= ctx._.addr or len(blocks) >= MAX_RAM_BLOCKS


RAM_PAYLOADS: dict[int, Construct] = {
    RamFlag.MEM_SIZE: Struct("blocks" / If(this._.addr > 0, RepeatUntil(_block_list_done, RamBlockEntry))),
    RamFlag.ZERO: Struct("fill" / Int8ub),
    RamFlag.PAGE: Struct("data" / Bytes(this._params.page_size)),
    RamFlag.XBZRLE: Struct("encoding" / Int8ub, "data" / Prefixed(Int16ub, GreedyBytes)),
    RamFlag.COMPRESS_PAGE: Struct("data" / Prefixed(Int32ub, GreedyBytes)),
    RamFlag.EOS: Pass,
    RamFlag.HOOK: Pass,
    RamFlag.MULTIFD_FLUSH: Pass,
}

RamRecordHeader = Struct(
    "addr_flags" / Int64ub,
    "flags" / Computed(this.addr_flags & (this._params.page_size - 1)),
    "addr" / Computed(this.addr_flags - this.flags),
    "kind" / Computed(this.flags & (ANY_FLAG_MASK ^ RamFlag.CONTINUE)),
    "idstr"
    / If(
        lambda ctx: not ctx.flags & RamFlag.CONTINUE and ctx.kind in PAGE_KINDS,
        IdStr,
    ),
)

RamRecord = Struct(
    "header" / RamRecordHeader,
    "addr" / Computed(this.header.addr),
    "payload" / Switch(this.header.kind, RAM_PAYLOADS, default=Error),
)


# --- multifd channels (migration/multifd.h, multifd.c, multifd-nocomp.c) -----------
# Each multifd connection starts with MultiFDInit_t, then carries packets: a fixed
# header, an offset table, and (when the packet has normal pages) a payload.  All
# big-endian.  The layout is the same from QEMU 4.0 to 10.x (version 1); 9.0 put
# ``zero_pages`` into what was the first unused word, 10.0 added device-state packets.

MULTIFD_MAGIC = 0x11223344
MULTIFD_VERSION = 1
#: MULTIFD_PACKET_SIZE: a RAM packet describes at most this many bytes of pages, so
#: its offset table has MULTIFD_PACKET_SIZE / TARGET_PAGE_SIZE entries (128 for 4 KiB).
MULTIFD_PACKET_SIZE = 512 * 1024


class MultifdFlag(enum.IntFlag):
    """MULTIFD_FLAG_* in a packet header's ``flags``."""

    SYNC = 0x01
    ZLIB = 0x02  # the compression method occupies bits 1..5 (mask 0x3e)
    ZSTD = 0x04
    QPL = 0x08  # 9.1
    UADK = 0x10  # 9.1
    QATZIP = 0x20  # 9.2
    DEVICE_STATE = 0x40  # 10.0: VFIO device state, not RAM


#: MULTIFD_FLAG_COMPRESSION_MASK (was 7 << 1 before QPL).
MULTIFD_COMPRESSION_MASK = 0x3E
MULTIFD_COMPRESSION_NAMES = {
    0: "nocomp",
    MultifdFlag.ZLIB: "zlib",
    MultifdFlag.ZSTD: "zstd",
    MultifdFlag.QPL: "qpl",
    MultifdFlag.UADK: "uadk",
    MultifdFlag.QATZIP: "qatzip",
}

#: MultiFDInit_t: the 64-byte handshake at the start of every multifd channel.
MultiFDInit = Struct(
    "magic" / Int32ub,
    "version" / Int32ub,
    "uuid" / Bytes(16),  # qemu_uuid of the source; the destination compares it with its own
    "id" / Int8ub,  # channel number
    "unused1" / Bytes(7),
    "unused2" / Bytes(32),  # u64 unused2[4]
)

#: MultiFDPacketHdr_t (named so in 10.0; the same first three words since 4.0).
MultiFDPacketHdr = Struct(
    "magic" / Int32ub,
    "version" / Int32ub,
    "flags" / Int32ub,
)

#: The fixed part of a RAM packet (MultiFDPacket_t without its offset table).
MultiFDPacketFixed = Struct(
    *MultiFDPacketHdr.subcons,
    "pages_alloc" / Int32ub,  # entries used of the offset table (0 in 10.0's SYNC packets)
    "normal_pages" / Int32ub,  # "pages_used" in QEMU <= 5.x
    "next_packet_size" / Int32ub,  # payload bytes that follow (compressed size); stale in 7.2 SYNCs
    "packet_num" / Int64ub,
    "zero_pages" / Int32ub,  # 9.0+; part of unused[] before, always 0 there
    "unused32" / Int32ub,
    "unused64" / Bytes(24),
    "ramblock" / Bytes(256),  # NUL-padded idstr
)


def multifd_page_count(page_size: int) -> int:
    """Entries in every RAM packet's offset table (multifd_ram_page_count)."""
    return MULTIFD_PACKET_SIZE // page_size


#: A whole RAM packet on the wire.  The offset table always has
#: multifd_page_count() entries (the receiver reads a fixed packet_len), whatever
#: ``pages_alloc`` says: normal page offsets first, then zero page offsets.
#: Followed by the payload: NOCOMP the normal pages in table order (normal_pages *
#: page size bytes); zlib/zstd ``next_packet_size`` bytes of one per-channel stream.
#: No payload when normal_pages is 0.  Parse parameter: ``page_size``.
MultiFDPacket = Struct(
    *MultiFDPacketFixed.subcons,
    "offset" / Array(lambda ctx: multifd_page_count(ctx._params.page_size), Int64ub),
)

#: MultiFDPacketDeviceState_t (10.0, flags has DEVICE_STATE), then next_packet_size
#: opaque bytes of device state.
MultiFDPacketDeviceState = Struct(
    *MultiFDPacketHdr.subcons,
    "idstr" / Bytes(256),
    "instance_id" / Int32ub,
    "next_packet_size" / Int32ub,
)

# --- mapped-ram (QEMU 9.0+, migration/ram.c mapped_ram_setup_ramblock) -------------
# With capability mapped-ram every MEM_SIZE block entry is followed by a
# MappedRamHeader; the writer then seeks to pages_offset + used_length, where the
# next entry (or the rest of the stream) continues.  Page i of the block lives at
# pages_offset + i * page_size when bit i of the bitmap is set; clear bits are holes.

MAPPED_RAM_HDR_VERSION = 1
MAPPED_RAM_FILE_OFFSET_ALIGNMENT = 0x100000  # pages_offset is rounded up to this
#: The bitmap is an array of host ``unsigned long`` (8 bytes on 64-bit hosts), each
#: word in host byte order: on x86/arm64 hosts, page i is bit i % 8 of byte i // 8.
MAPPED_RAM_BITMAP_WORD = 8

MappedRamHeader = Struct(
    "version" / Int32ub,
    "page_size" / Int64ub,
    "bitmap_offset" / Int64ub,  # file offset of the bitmap
    "pages_offset" / Int64ub,  # file offset of page 0; 0 for an x-ignore-shared block
)


def mapped_ram_bitmap_size(used_length: int, page_size: int) -> int:
    """BITS_TO_LONGS(used_length / page_size) * sizeof(unsigned long)."""
    pages = used_length // page_size
    words = -(-pages // (8 * MAPPED_RAM_BITMAP_WORD))
    return words * MAPPED_RAM_BITMAP_WORD


#: A MEM_SIZE block entry under mapped-ram (the optional page_size/addr extras of
#: RamBlockEntry come before the header).  Parse parameters as for RamBlockEntry.
MappedRamBlockEntry = Struct(
    *RamBlockEntry.subcons,
    "mapped_ram" / MappedRamHeader,
)
