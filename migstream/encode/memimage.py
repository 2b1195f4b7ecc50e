"""Memory images to encode: the ``extract`` layout or one raw block file.

A ``MemoryImage`` is one snapshot of a VM's RAM: the machine type, the target page
size and the RAM blocks in the order QEMU lists them (MEM_SIZE order, which is
``ram_list.blocks``: largest ``max_length`` first).  Block contents are read-only
numpy views of mmaps (or any buffer the caller hands in), never copied.

Every check that can fail on user files happens here and raises ``UsageError``
with the file and block at fault.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass
from dataclasses import field

import numpy as np

from ..errors import UsageError
from ..image.manifest import read_manifest
from ..wire.pagesize import page_size_for

#: Machine types QEMU resolves to a versioned name before it writes the
#: configuration section; the destination compares the versioned names.
_ALIASES = {
    "pc": "pc-i440fx-<version>",
    "q35": "pc-q35-<version>",
    "pseries": "pseries-<version>",
    "s390-ccw-virtio": "s390-ccw-virtio-<version>",
}


@dataclass
class RamBlockImage:
    """One RAM block's content.  ``ram_addr`` is its offset in QEMU's global
    ram_addr space (block->offset), which the XBZRLE cache indexes by; the stream
    does not carry it, so images lay blocks out one after the other."""

    name: str
    data: np.ndarray  # uint8, length == used_length
    ram_addr: int = 0

    @property
    def used_length(self) -> int:
        return len(self.data)


@dataclass
class MemoryImage:
    machine: str
    page_size: int
    blocks: list[RamBlockImage]
    source: str = "<memory>"
    _maps: list = field(default_factory=list, repr=False)

    @property
    def arch(self) -> str | None:
        return page_size_for(self.machine)[1]

    def block_layout(self) -> list[tuple[str, int]]:
        return [(b.name, b.used_length) for b in self.blocks]

    def check_same_vm(self, first: MemoryImage) -> None:
        """A later image must be of the same VM as ``first``: machine, page size and
        RAM blocks (names and lengths, in order)."""
        if self.page_size != first.page_size or self.machine != first.machine:
            raise UsageError(
                f"{self.source}: machine {self.machine}/page size {self.page_size} differs from "
                f"the first image's {first.machine}/{first.page_size}"
            )
        if self.block_layout() != first.block_layout():
            raise UsageError(
                f"{self.source}: RAM blocks differ from the first image's: "
                f"{layout_str(self.block_layout())} vs {layout_str(first.block_layout())}"
            )

    def close(self) -> None:
        for b in self.blocks:
            b.data = np.zeros(0, np.uint8)
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # a view is still exported somewhere: the GC closes it
                pass
        self._maps.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- constructors ------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls, machine: str, blocks, *, page_size: int | None = None, source: str = "<memory>"
    ) -> MemoryImage:
        """``blocks``: [(name, buffer)] in MEM_SIZE order; buffers are numpy arrays,
        mmaps, bytes or bytearrays (not copied)."""
        page_size = check_machine(machine, page_size, source)
        out = []
        addr = 0
        for name, buf in blocks:
            arr = (
                np.frombuffer(buf, dtype=np.uint8)
                if not isinstance(buf, np.ndarray)
                else buf.reshape(-1).view(np.uint8)
            )
            _check_block(name, len(arr), page_size, source)
            out.append(RamBlockImage(name, arr, addr))
            addr += _align(len(arr), page_size)
        if not out:
            raise UsageError(f"{source}: no RAM blocks")
        _check_unique([b.name for b in out], source)
        return cls(machine, page_size, out, source)

    @classmethod
    def from_directory(cls, path: str, *, machine: str | None = None) -> MemoryImage:
        """An ``extract`` output directory: manifest.json + one file per block."""
        man_path, manifest, entries = read_manifest(path)
        if manifest.get("complete") is False:
            raise UsageError(
                f"{man_path}: the extraction was incomplete (manifest says complete: false"
                + (f", {manifest['error']}" if manifest.get("error") else "")
                + ")"
            )
        mtype = machine or manifest.get("machine")
        if not mtype:
            raise UsageError(f"{man_path}: no machine type in the manifest (give --machine)")
        if machine and manifest.get("machine") and machine != manifest["machine"]:
            raise UsageError(f"--machine {machine} differs from the manifest's machine {manifest['machine']}")
        page_size = check_machine(mtype, manifest.get("page_size"), man_path)
        image = cls(mtype, page_size, [], path)
        addr = 0
        try:
            for block in entries:
                name, length, entry = block.name, block.length, block.entry
                _check_block(name, length, page_size, man_path)
                # Optional: the block's offset in QEMU's ram_addr space (HMP `info
                # ramblock`), so that XBZRLE cache slots collide as in QEMU.
                at = entry.get("ram_addr", addr)
                if not isinstance(at, int) or at < 0 or at % page_size:
                    raise UsageError(f"{man_path}: block {name}: ram_addr {at!r} is not a page-aligned offset")
                arr = image._map(block.path, name, length)
                image.blocks.append(RamBlockImage(name, arr, at))
                addr = max(addr, at + _align(length, page_size))
            if not image.blocks:
                raise UsageError(f"{man_path}: no RAM blocks")
            _check_unique([b.name for b in image.blocks], man_path)
            spans = sorted((b.ram_addr, b.ram_addr + b.used_length, b.name) for b in image.blocks)
            for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
                if start < end:
                    raise UsageError(f"{man_path}: blocks {a} and {b} overlap in ram_addr space")
        except BaseException:
            image.close()
            raise
        return image

    @classmethod
    def from_raw(cls, path: str, block: str, machine: str, *, page_size: int | None = None) -> MemoryImage:
        """One raw file holding one RAM block (e.g. pc.ram)."""
        page_size = check_machine(machine, page_size, path)
        try:
            length = os.path.getsize(path)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        _check_block(block, length, page_size, path)
        image = cls(machine, page_size, [], path)
        try:
            image.blocks.append(RamBlockImage(block, image._map(path, block, length), 0))
        except BaseException:
            image.close()
            raise
        return image

    @classmethod
    def open(cls, path: str, *, block: str | None = None, machine: str | None = None) -> MemoryImage:
        """A directory in the extract layout, or a raw image (needs ``block`` and
        ``machine``)."""
        if os.path.isdir(path):
            if block:
                raise UsageError(f"{path} is a directory; --block applies to a raw image file only")
            return cls.from_directory(path, machine=machine)
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file or directory")
        if not block or not machine:
            raise UsageError(f"{path} is a raw image: give --block NAME and --machine TYPE")
        return cls.from_raw(path, block, machine)

    def _map(self, fpath: str, name: str, length: int) -> np.ndarray:
        try:
            fd = os.open(fpath, os.O_RDONLY)
        except OSError as exc:
            raise UsageError(f"block {name}: {fpath}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size != length:
                raise UsageError(f"block {name}: {fpath} is {size} bytes, the manifest says {length}")
            if length == 0:
                return np.zeros(0, np.uint8)
            m = mmap.mmap(fd, length, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self._maps.append(m)
        return np.frombuffer(m, dtype=np.uint8)


def layout_str(layout) -> str:
    """``pc.ram=0x2000000, pc.bios=0x40000`` for error messages."""
    return ", ".join(f"{n}={length:#x}" for n, length in layout)


def check_machine(machine: str, page_size: int | None, where: str) -> int:
    """The target page size for ``machine``; rejects names QEMU would not send."""
    if not isinstance(machine, str) or not re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", machine):
        raise UsageError(f"{where}: unusable machine type {machine!r}")
    if machine in _ALIASES:
        raise UsageError(
            f"{where}: machine type {machine!r} is an alias; the stream must carry the name QEMU "
            f"resolves it to ({_ALIASES[machine]}, e.g. {_ALIASES[machine].replace('<version>', '7.2')}"
            f" for QEMU 7.2)"
        )
    known, _arch = page_size_for(machine)
    if known is None and page_size is None:
        raise UsageError(f"{where}: unknown machine type {machine!r} (target page size unknown)")
    size = int(page_size or known or 0)  # not both None: refused above
    if size & (size - 1) or not 512 <= size <= 65536:
        raise UsageError(f"{where}: unusable page size {size}")
    return size


def _check_block(name: str, length: int, page_size: int, where: str) -> None:
    if not isinstance(name, str) or not 0 < len(name.encode("latin-1", "replace")) < 256:
        raise UsageError(f"{where}: block name {name!r} must be 1..255 bytes")
    if length < 0:
        raise UsageError(f"{where}: block {name}: negative length")
    if length % page_size:
        raise UsageError(
            f"{where}: block {name}: length {length} is not a multiple of the target page size {page_size}"
        )


def _check_unique(names: list[str], where: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise UsageError(f"{where}: block {n} listed twice")
        seen.add(n)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a
