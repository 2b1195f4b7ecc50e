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

from construct import (
    Bytes,
    Computed,
    Const,
    Construct,
    Error,
    FixedSized,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Optional,
    PascalString,
    Pass,
    Prefixed,
    PrefixedArray,
    RepeatUntil,
    Struct,
    Switch,
    this,
)

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

