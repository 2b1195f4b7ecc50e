"""Guest-physical memory images: ELF cores (QEMU's ``dump-guest-memory`` with paging
off, or ``migstream dump``), LiME files and raw images (file offset = GPA).

The byte layouts of both formats are written here once (``ELF64_HEADER``,
``ELF64_PHDR``, ``LIME_HEADER``, ...): ``PhysicalImage`` reads them and
``image/physwriter.py`` writes them.  Every header is checked against the file
size before it is used, so a hostile file costs at most its program-header table
(at most 65535 entries: e_phnum is 16 bits) or one LiME header a range.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ..errors import UsageError

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_CORE = 4
PT_LOAD, PT_NOTE = 1, 4
#: e_ident (16 bytes), then e_type .. e_shstrndx (ELF64).
ELF64_HEADER = "16sHHIQQQIHHHHHH"
ELF32_HEADER = "16sHHIIIIIHHHHHH"
ELF64_PHDR = "IIQQQQQQ"  # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
ELF32_PHDR = "IIIIIIII"  # p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
NOTE_HEADER = "III"  # namesz descsz type
#: e_machine by architecture (the ELF ABI numbers QEMU's dump writes).
ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "riscv64": 243, "ppc64": 21, "s390x": 22, "arm": 40}

LIME_MAGIC = 0x4C694D45
LIME_HEADER = "<IIQQQ"  # magic, version (1), start, end (inclusive), reserved
LIME_HEADER_SIZE = struct.calcsize(LIME_HEADER)
#: LiME ranges a file may have before it is refused (a hostile file of 32-byte
#: headers would otherwise cost memory for each).
MAX_LIME_RANGES = 1 << 16


@dataclass(frozen=True)
class ImageRange:
    """``memsz`` bytes at guest-physical ``gpa``; the first ``filesz`` are in the file
    at ``file_offset``, the rest read as zero (ELF p_filesz < p_memsz)."""

    gpa: int
    memsz: int
    file_offset: int
    filesz: int

    @property
    def end(self) -> int:
        return self.gpa + self.memsz


class PhysicalImage:
    """A guest-physical image opened for reading by GPA (``read``), with its ranges
    ascending.  ``kind`` is ``elf``, ``lime`` or ``raw``."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        try:
            self.size = os.fstat(self.fd).st_size
            head = os.pread(self.fd, 64, 0)
            self.machine: int | None = None  # ELF e_machine
            if head[:4] == ELF_MAGIC:
                self.kind = "elf"
                self.ranges = self._elf(head)
            elif len(head) >= 4 and struct.unpack_from("<I", head)[0] == LIME_MAGIC:
                self.kind = "lime"
                self.ranges = self._lime()
            else:
                self.kind = "raw"
                self.ranges = [ImageRange(0, self.size, 0, self.size)] if self.size else []
            self._check_order()
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, what: str, offset: int):
        raise UsageError(f"{self.path}: {what} (file offset 0x{offset:x})")

    def _elf(self, head: bytes) -> list[ImageRange]:
        if len(head) < 52:
            self._fail("ELF header cut short", 0)
        cls, data = head[4], head[5]
        if cls not in (ELFCLASS32, ELFCLASS64) or data not in (ELFDATA2LSB, ELFDATA2MSB):
            self._fail(f"ELF class {cls} / data encoding {data} unknown", 4)
        end = "<" if data == ELFDATA2LSB else ">"
        hfmt, pfmt = (ELF64_HEADER, ELF64_PHDR) if cls == ELFCLASS64 else (ELF32_HEADER, ELF32_PHDR)
        if len(head) < struct.calcsize(end + hfmt):
            self._fail("ELF header cut short", 0)
        h = struct.unpack_from(end + hfmt, head)
        self.machine = h[2]
        phoff, phentsize, phnum = h[5], h[9], h[10]
        psize = struct.calcsize(end + pfmt)
        if phnum and phentsize < psize:
            self._fail(f"program header entry size {phentsize} is below {psize}", 0)
        if phoff + phnum * phentsize > self.size:
            self._fail(f"{phnum} program headers at 0x{phoff:x} run past the end of the file", phoff)
        table = os.pread(self.fd, phnum * phentsize, phoff) if phnum else b""
        out = []
        for i in range(phnum):
            p = struct.unpack_from(end + pfmt, table, i * phentsize)
            if cls == ELFCLASS64:
                ptype, offset, paddr, filesz, memsz = p[0], p[2], p[4], p[5], p[6]
            else:
                ptype, offset, paddr, filesz, memsz = p[0], p[1], p[3], p[4], p[5]
            if ptype != PT_LOAD or not memsz:
                continue
            at = phoff + i * phentsize
            if filesz > memsz:
                self._fail(f"PT_LOAD {i}: p_filesz 0x{filesz:x} > p_memsz 0x{memsz:x}", at)
            if offset + filesz > self.size:
                self._fail(f"PT_LOAD {i} (GPA 0x{paddr:x}): its bytes run past the end of the file", at)
            if paddr + memsz > 1 << 64:
                self._fail(f"PT_LOAD {i}: GPA 0x{paddr:x} + 0x{memsz:x} beyond 64 bits", at)
            out.append(ImageRange(paddr, memsz, offset, filesz))
        out.sort(key=lambda r: r.gpa)
        return out

    def _lime(self) -> list[ImageRange]:
        out: list[ImageRange] = []
        pos = 0
        while pos < self.size:
            raw = os.pread(self.fd, LIME_HEADER_SIZE, pos)
            if len(raw) < LIME_HEADER_SIZE:
                self._fail("LiME range header cut short", pos)
            magic, version, start, end, _ = struct.unpack(LIME_HEADER, raw)
            if magic != LIME_MAGIC:
                self._fail(f"LiME range header has magic 0x{magic:08x}, not 0x{LIME_MAGIC:08x}", pos)
            if version != 1:
                self._fail(f"LiME version {version} (only 1 is defined)", pos)
            if end < start:
                self._fail(f"LiME range ends (0x{end:x}) before it starts (0x{start:x})", pos)
            n = end - start + 1
            if pos + LIME_HEADER_SIZE + n > self.size:
                self._fail(f"LiME range 0x{start:x}-0x{end:x} runs past the end of the file", pos)
            if len(out) >= MAX_LIME_RANGES:
                self._fail(f"more than {MAX_LIME_RANGES} LiME ranges", pos)
            out.append(ImageRange(start, n, pos + LIME_HEADER_SIZE, n))
            pos += LIME_HEADER_SIZE + n
        return out

    def _check_order(self) -> None:
        for a, b in zip(self.ranges, self.ranges[1:]):
            if b.gpa < a.end:
                raise UsageError(
                    f"{self.path}: {self.kind} ranges overlap at GPA 0x{a.gpa:x}-0x{a.end - 1:x} and "
                    f"0x{b.gpa:x}-0x{b.end - 1:x}"
                )

    def read(self, gpa: int, size: int) -> bytes:
        """``size`` bytes from ``gpa``; UsageError when part of it is in no range."""
        out = bytearray()
        while size > 0:
            r = self.locate(gpa)
            if r is None:
                raise UsageError(f"{self.path}: GPA 0x{gpa:x} is in no range of the image")
            k = min(size, r.end - gpa)
            rel = gpa - r.gpa
            inside = max(0, min(k, r.filesz - rel))
            chunk = os.pread(self.fd, inside, r.file_offset + rel) if inside else b""
            out += chunk.ljust(k, b"\0")
            gpa += k
            size -= k
        return bytes(out)

    def locate(self, gpa: int) -> ImageRange | None:
        for r in self.ranges:
            if r.gpa <= gpa < r.end:
                return r
        return None
