"""The libvirt save-image header (``virsh save`` / ``managedsave``), declared once.

Kept apart from ``grammar.py`` on purpose: that module is the QEMU wire format
(big-endian, QEMU's vocabulary); this header is libvirt's, written in the *host*
byte order of the machine that saved, and wraps a QEMU stream rather than being
part of it.  It is still the only place where the header's layout is written.

Layout (libvirt src/qemu/qemu_saveimage.h, struct _virQEMUSaveHeader; rules from
qemu_saveimage.c, qemuSaveImageReadHeader / virQEMUSaveDataWrite)::

    char   magic[16]     "LibvirtQemudSave" when complete; "LibvirtQemudPart" while
                         the save runs (fixed up at the very end)
    uint32 version       2
    uint32 data_len      bytes of domain XML + cookie XML + zero padding that follow
    uint32 was_running   1 if the domain ran when saved (restore resumes it)
    uint32 format        0 raw, 1 gzip, 2 bzip2, 3 xz, 4 lzop, 5 zstd, 6 sparse
    uint32 cookieOffset  offset of the cookie XML inside the data (0: none)
    uint32 unused[14]
    --- 92 bytes, then data_len bytes, then the QEMU stream (compressed by
    `<format> -c` unless raw/sparse)

libvirt reads the header in host order and byte-swaps it when the version looks
larger than 2 (an image from a host of the other endianness).
"""

from __future__ import annotations

import enum

from construct import Array
from construct import Bytes
from construct import Int32ub
from construct import Int32ul
from construct import Struct

MAGIC_COMPLETE = b"LibvirtQemudSave"
MAGIC_PARTIAL = b"LibvirtQemudPart"
MAGIC_PREFIX = b"LibvirtQemud"
SAVE_VERSION = 2  # QEMU_SAVE_VERSION


class SaveFormat(enum.IntEnum):
    """virQEMUSaveFormat: how the QEMU stream after the XML is stored."""

    RAW = 0
    GZIP = 1
    BZIP2 = 2
    XZ = 3
    LZOP = 4
    ZSTD = 5
    SPARSE = 6  # libvirt 11.x: a mapped-ram stream written by QEMU into the file


def _header(u32):
    return Struct(
        "magic" / Bytes(16),
        "version" / u32,
        "data_len" / u32,
        "was_running" / u32,
        "format" / u32,
        "cookie_offset" / u32,
        "unused" / Array(14, u32),
    )


#: The header as written on a little-endian host (x86_64, aarch64 ...).
SaveHeaderLE = _header(Int32ul)
#: The same header from a big-endian host (s390x, ppc64 BE).
SaveHeaderBE = _header(Int32ub)
SAVE_HEADER_SIZE = SaveHeaderLE.sizeof()  # 92
