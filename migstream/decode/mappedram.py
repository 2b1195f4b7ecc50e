"""Mapped-ram (QEMU 9.0+, capability mapped-ram, ``file:`` URIs).

The MEM_SIZE record of such a stream gives every RAM block a MappedRamHeader and a
page region at a fixed file offset (grammar.MappedRamHeader): page i of the block is
at ``pages_offset + i * page_size`` if bit i of the block's bitmap is set, otherwise
that page was never written (a hole, reads as zero).  The rest of the stream (EOS,
PART/END sections with only EOS, devices, EOF, VMDESCRIPTION) follows the last region.
With multifd the channels write pages straight into the regions: the file looks the
same, there are no packets.

The decoder passes regions by as ``MappedRamPages`` views without reading them;
``RamImage`` copies only the pages whose bit is set (``written_runs``), so holes of a
mapped file are never touched.  ``MappedRamFile`` reads single pages by offset for
random access.  Rules from QEMU's migration/ram.c (mapped_ram_setup_ramblock,
parse_ramblock_mapped_ram, read_ramblock_mapped_ram) and
docs/devel/migration/mapped-ram.rst.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING

from ..errors import StreamError
from ..wire import grammar as g

if TYPE_CHECKING:
    import numpy as np

#: Largest gap between a header and its bitmap that a streaming read accepts (QEMU
#: writes the bitmap right after the header).
MAX_BITMAP_GAP = g.MAPPED_RAM_FILE_OFFSET_ALIGNMENT
MAX_BLOCK_LENGTH = 1 << 50


@dataclass
class MappedRamList:
    """Decoder state while reading a mapped-ram MEM_SIZE record."""

    offset: int  # of the MEM_SIZE record
    total: int  # announced sum of used lengths
    left: int = -1
    blocks: list = field(default_factory=list)
    region: tuple | None = None  # (block, pages_offset, end) being passed

    def __post_init__(self) -> None:
        if self.left < 0:
            self.left = self.total


def check_mapped_ram_header(
    name: str, used_length: int, hdr, after_header: int, page_size: int, left: int, offset: int
) -> int:
    """The loader's checks on one block's header; returns the bitmap size in bytes.
    ``after_header`` is the stream offset just past the header."""

    def fail(msg: str):
        raise StreamError(msg, offset, section="ram", block=name)

    if used_length > left:
        fail(f"RAM block lengths add up to more than MEM_SIZE announced (0x{used_length:x} > 0x{left:x} left)")
    if used_length > MAX_BLOCK_LENGTH:
        fail(f"RAM block {name} of 0x{used_length:x} bytes is implausibly large")
    if hdr.version > g.MAPPED_RAM_HDR_VERSION:
        fail(
            f"Migration mapped-ram capability version not supported (expected <= "
            f"{g.MAPPED_RAM_HDR_VERSION}, got {hdr.version})"
        )
    if hdr.page_size != page_size:
        fail(f"mapped-ram header page size {hdr.page_size}, target page size {page_size}")
    if used_length % page_size:
        fail(f"block length 0x{used_length:x} is not a multiple of the page size")
    if hdr.pages_offset == 0 and hdr.bitmap_offset == 0:
        return 0  # x-ignore-shared block: no bitmap, no region
    if hdr.pages_offset % page_size:
        fail(f"Error reading ramblock {name} pages, region has bad alignment (0x{hdr.pages_offset:x})")
    size = g.mapped_ram_bitmap_size(used_length, page_size)
    if hdr.bitmap_offset < after_header:
        fail(f"mapped-ram bitmap at 0x{hdr.bitmap_offset:x} lies before the end of its header (0x{after_header:x})")
    if hdr.bitmap_offset - after_header > MAX_BITMAP_GAP:
        fail(
            f"mapped-ram bitmap at 0x{hdr.bitmap_offset:x} is 0x{hdr.bitmap_offset - after_header:x} "
            f"bytes after its header (QEMU writes it right after)"
        )
    if hdr.bitmap_offset + size > hdr.pages_offset:
        fail(
            f"mapped-ram bitmap (0x{hdr.bitmap_offset:x} + {size}) runs into the page region at 0x{hdr.pages_offset:x}"
        )
    return size


def bitmap_bits(bitmap: bytes, first: int, count: int) -> np.ndarray:
    """Bits first .. first+count of a mapped-ram bitmap as a bool array.  Host
    ``unsigned long`` words on a little-endian host: page i is bit i % 8 of byte i // 8."""
    import numpy as np  # mapped-ram files only: a plain stream decodes without numpy

    lo, hi = first // 8, -(-(first + count) // 8)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8, count=hi - lo, offset=lo), bitorder="little")
    start = first - lo * 8
    return bits[start : start + count].astype(bool)


def written_runs(bitmap: bytes, first: int, count: int) -> list[tuple[int, int]]:
    """(first page, pages) of each run of set bits among pages first .. first+count."""
    import numpy as np

    bits = bitmap_bits(bitmap, first, count)
    if not bits.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], bits, [False])).astype(np.int8)))
    return [(first + int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


class MappedRamFile:
    """Random access to the pages of a mapped-ram file (seekable), from the
    MappedRamBlock events of its decode: ``page(block, addr)`` reads one page with
    pread, or returns None for a hole."""

    def __init__(self, path: str, blocks) -> None:
        self.path = path
        self.blocks = {b.name: b for b in blocks}
        self._fd = os.open(path, os.O_RDONLY)

    def page(self, block: str, addr: int) -> bytes | None:
        b = self.blocks[block]
        i = addr // b.page_size
        if not b.pages_offset or not bitmap_bits(b.bitmap, i, 1)[0]:
            return None
        return os.pread(self._fd, b.page_size, b.pages_offset + i * b.page_size)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> MappedRamFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
