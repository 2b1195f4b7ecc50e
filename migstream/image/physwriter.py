"""Writing a guest-physical image from block files (an extract directory): ELF64
core, LiME or raw.

Streamed and sparse: only the data extents of each block file (SEEK_DATA /
SEEK_HOLE) are copied, in the kernel (``copy_file_range``), so zero pages stay file
holes and memory use does not grow with the guest.  ELF: one PT_NOTE naming the
machine and migstream's version, then one PT_LOAD per range (p_paddr = p_vaddr = GPA,
p_filesz = p_memsz), always ELFCLASS64, each range's bytes at a page-aligned offset.
LiME: a range header before each range, ascending.  Raw: file offset = GPA.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable

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


def write_physical_image(
    path: str,
    fmt: str,
    pmap: PhysicalMap,
    block_files: dict[str, str],
    *,
    arch: str | None,
    note: bytes,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``pmap``'s ranges from ``block_files`` (block name -> sparse file) to
    ``path`` in ``fmt``; returns the bytes of data copied."""
    writes, offsets, size = layout(pmap, fmt, arch, note)
    if fmt == "raw" and size > 1 << 62:
        raise UsageError(f"a raw image would be {size} bytes long (RAM at GPA 0x{pmap.ranges[-1].gpa:x}); use ELF")
    out = new_file(path)
    copied = 0
    fds: dict[str, int] = {}
    try:
        try:
            os.ftruncate(out, size)  # sparse: what is not written reads as zero
        except OSError as exc:
            raise UsageError(f"{path}: cannot make a {size}-byte sparse file: {exc.strerror}") from None
        for at, blob in writes:
            os.pwrite(out, blob, at)
        for r, at in zip(pmap.ranges, offsets):
            src = fds.get(r.block)
            if src is None:
                src = fds[r.block] = os.open(block_files[r.block], os.O_RDONLY)
            for lo, hi in data_extents(src, r.offset, r.offset + r.size):
                copy_range(src, lo, out, at + lo - r.offset, hi - lo)
                copied += hi - lo
                if progress:
                    progress(copied)
    finally:
        for fd in fds.values():
            os.close(fd)
        os.close(out)
    return copied


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
