"""Guest-physical image files: ELF64 core, LiME or raw, created with their headers
(``open_physical_image``) for the RAM image to write pages into at the file offsets
of each block's pieces, so that decoding writes each page once, zero pages stay file
holes and memory use does not grow with the guest.  ``data_extents`` and
``copy_range`` copy sparse data between files (encoding from physical images).  ELF: one PT_NOTE naming the
machine and migstream's version, then one PT_LOAD per range (p_paddr = p_vaddr = GPA,
p_filesz = p_memsz), always ELFCLASS64, each range's bytes at a page-aligned offset.
LiME: a range header before each range, ascending.  Raw: file offset = GPA.
"""

from __future__ import annotations

import errno
import os
import struct

from ..containers.physimage import ELF64_HEADER
from ..containers.physimage import ELF64_PHDR
from ..containers.physimage import ELF_MACHINE
from ..containers.physimage import ELF_MAGIC
from ..containers.physimage import ELFCLASS64
from ..containers.physimage import ELFDATA2LSB
from ..containers.physimage import ELFDATA2MSB
from ..containers.physimage import ET_CORE
from ..containers.physimage import LIME_HEADER
from ..containers.physimage import LIME_HEADER_SIZE
from ..containers.physimage import LIME_MAGIC
from ..containers.physimage import NOTE_HEADER
from ..containers.physimage import PT_LOAD
from ..containers.physimage import PT_NOTE
from ..errors import UsageError
from .physmap import PhysicalMap
from .pwrite import pwrite_all
from .ramimage import new_file

FORMATS = ("elf", "raw", "lime")
_ALIGN = 4096
_NOTE_NAME = b"MIGSTREAM\0"
_NOTE_TYPE = 0x4D530001  # "MS", 1: a text note (machine=..., version=...)
_COPY_CHUNK = 1 << 30


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _elf_headers(pmap: PhysicalMap, arch: str | None, note: bytes) -> tuple[bytes, list[int], int]:
    """(ELF header + program headers + note, file offset of each range, file size)."""
    big = arch in ("s390x",)
    e = ">" if big else "<"
    n = len(pmap.ranges) + 1
    hsize = struct.calcsize(e + ELF64_HEADER)
    psize = struct.calcsize(e + ELF64_PHDR)
    note_off = hsize + n * psize
    note_blob = (
        struct.pack(e + NOTE_HEADER, len(_NOTE_NAME), len(note), _NOTE_TYPE)
        + _NOTE_NAME.ljust(_pad4(len(_NOTE_NAME)), b"\0")
        + note.ljust(_pad4(len(note)), b"\0")
    )
    at = _align(note_off + len(note_blob))
    offsets = []
    phdrs = [struct.pack(e + ELF64_PHDR, PT_NOTE, 0, note_off, 0, 0, len(note_blob), len(note_blob), 0)]
    for r in pmap.ranges:
        offsets.append(at)
        phdrs.append(struct.pack(e + ELF64_PHDR, PT_LOAD, 7, at, r.gpa, r.gpa, r.size, r.size, 0))
        at = _align(at + r.size)
    ident = ELF_MAGIC + bytes([ELFCLASS64, ELFDATA2MSB if big else ELFDATA2LSB, 1, 0]) + bytes(8)
    header = struct.pack(
        e + ELF64_HEADER, ident, ET_CORE, ELF_MACHINE.get(arch or "", 0), 1, 0, hsize, 0, 0, hsize, psize, n, 0, 0, 0
    )
    end = offsets[-1] + pmap.ranges[-1].size if offsets else note_off + len(note_blob)
    return header + b"".join(phdrs) + note_blob, offsets, end


def layout(
    pmap: PhysicalMap, fmt: str, arch: str | None, note: bytes
) -> tuple[list[tuple[int, bytes]], list[int], int]:
    """(header writes [(file offset, bytes)], file offset of each range's bytes, file size)."""
    if fmt == "elf":
        head, offsets, size = _elf_headers(pmap, arch, note)
        return [(0, head)], offsets, size
    if fmt == "lime":
        writes, offsets = [], []
        at = 0
        for r in pmap.ranges:
            writes.append((at, struct.pack(LIME_HEADER, LIME_MAGIC, 1, r.gpa, r.end - 1, 0)))
            offsets.append(at + LIME_HEADER_SIZE)
            at += LIME_HEADER_SIZE + r.size
        return writes, offsets, at
    if fmt == "raw":
        return [], [r.gpa for r in pmap.ranges], (pmap.ranges[-1].end if pmap.ranges else 0)
    raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def open_physical_image(
    path: str, fmt: str, pmap: PhysicalMap, *, arch: str | None, note: bytes
) -> tuple[int, dict[str, list[tuple[int, int, int]]]]:
    """Create ``path`` as a sparse ``fmt`` image of ``pmap`` with its headers written;
    returns (fd, pieces by block: [(block offset, length, file offset)]) for the RAM
    image to write pages into (``RamImage(placement=...)``)."""
    writes, offsets, size = layout(pmap, fmt, arch, note)
    if fmt == "raw" and size > 1 << 62:
        raise UsageError(f"a raw image would be {size} bytes long (RAM at GPA 0x{pmap.ranges[-1].gpa:x}); use ELF")
    fd = new_file(path)
    try:
        try:
            os.ftruncate(fd, size)  # sparse: what is not written reads as zero
        except OSError as exc:
            raise UsageError(f"{path}: cannot make a {size}-byte sparse file: {exc.strerror}") from None
        for at, blob in writes:
            pwrite_all(fd, blob, at)
    except BaseException:
        os.close(fd)
        raise
    pieces: dict[str, list[tuple[int, int, int]]] = {}
    for r, at in zip(pmap.ranges, offsets):
        pieces.setdefault(r.block, []).append((r.offset, r.size, at))
    for p in pieces.values():
        p.sort()
    return fd, pieces


def data_extents(fd: int, start: int, end: int):
    """(lo, hi) extents of ``fd`` in [start, end) that may hold data (not holes)."""
    pos = start
    while pos < end:
        try:
            lo = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from pos to the end of the file
                return
            raise
        if lo >= end:
            return
        hi = min(os.lseek(fd, lo, os.SEEK_HOLE), end)
        yield lo, hi
        pos = hi


def copy_range(src: int, src_off: int, dst: int, dst_off: int, n: int) -> None:
    """Copy ``n`` bytes between files in the kernel (copy_file_range), or by
    pread/pwrite where the kernel refuses (other file systems, old kernels)."""
    while n > 0:
        try:
            k = os.copy_file_range(src, dst, min(n, _COPY_CHUNK), src_off, dst_off)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            k = 0
        if k <= 0:
            data = os.pread(src, min(n, 1 << 24), src_off)
            if not data:
                return  # past the end of the source: the rest stays a hole
            os.pwrite(dst, data, dst_off)
            k = len(data)
        src_off += k
        dst_off += k
        n -= k
