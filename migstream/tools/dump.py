"""Guest-physical memory of a stream (the ``dump`` job) and a reader by GPA.

``dump`` runs the ``extract`` job (so every input extract reads works here) with the
RAM blocks placed in one ELF core, LiME or raw file instead of block files: once
MEM_SIZE has listed the blocks, they are laid out as QEMU does
(``image/physmap.py``), the file's headers are written (``image/physwriter.py``) and
every page goes straight to its place; zero pages stay holes.  ``GuestPhysical`` reads
an extract directory by guest-physical address.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version

from ..errors import StreamError
from ..errors import UsageError
from ..events import RamBlockList
from ..image.manifest import read_manifest
from ..image.physmap import BlockInfo
from ..image.physmap import PhysicalMap
from ..image.physmap import blocks_from_manifest
from ..image.physmap import physical_map
from ..image.physwriter import open_physical_image
from ..wire.pagesize import page_size_for
from .extract import extract


def migstream_version() -> str:
    try:
        return version("migstream")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class LayoutOptions:
    """What the stream cannot tell: ``--map``, ``--numa``, ``--cpu-vendor``."""

    overrides: dict | None = None
    numa_order: list[str] | None = None
    cpu_vendor: str | None = None

    def map_for(self, machine: str | None, manifest: dict) -> PhysicalMap:
        return physical_map(
            machine,
            blocks_from_manifest(manifest),
            int(manifest.get("page_size") or 4096),
            overrides=self.overrides,
            numa_order=self.numa_order,
            cpu_vendor=self.cpu_vendor,
        )


@dataclass
class DumpResult:
    map: PhysicalMap
    manifest: dict
    error: StreamError | None
    warnings: list


def dump(
    stream: str,
    output: str,
    fmt: str = "elf",
    *,
    layout: LayoutOptions | None = None,
    page_size: int | None = None,
    allow_hook: bool = False,
    progress: Callable[[int], None] | None = None,
    channels: list[str] | None = None,
) -> DumpResult:
    """Write the guest-physical image of ``stream`` to ``output``.  A stream error
    does not raise: what was decoded before it is written and returned with it."""
    layout = layout or LayoutOptions()
    state: dict = {}

    def placement_for(block_list: RamBlockList | None, decoder) -> dict:
        # Called once, when the first RAM event arrives: MEM_SIZE has listed the blocks.
        machine = decoder.configuration.machine if decoder.configuration else None
        if block_list is None:
            raise UsageError(f"{stream}: no RAM block list (MEM_SIZE) before the first page: no layout")
        infos = [BlockInfo(b.name, b.used_length, b.addr) for b in block_list.blocks]
        pmap = physical_map(
            machine,
            infos,
            decoder.page_size or 4096,
            overrides=layout.overrides,
            numa_order=layout.numa_order,
            cpu_vendor=layout.cpu_vendor,
        )
        _, arch = page_size_for(machine, [b.name for b in infos])
        note = f"machine={machine}\nmigstream={migstream_version()}\n".encode()
        fd, pieces = open_physical_image(output, fmt, pmap, arch=arch, note=note)
        state.update(map=pmap, fd=fd)
        return {name: (fd, p) for name, p in pieces.items()}

    where = os.path.dirname(os.path.abspath(output))
    scratch = tempfile.mkdtemp(prefix=".migstream-dump-", dir=where)  # manifest.json, disks of a block migration
    try:
        result = extract(
            stream,
            scratch,
            page_size=page_size,
            allow_hook=allow_hook,
            progress=progress,
            channels=channels,
            placement_for=placement_for,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if "fd" in state:
            os.close(state["fd"])
    if "map" not in state:
        raise UsageError(f"{stream}: no RAM in the stream: nothing to dump") from result.error
    return DumpResult(state["map"], result.manifest, result.error, result.warnings)


class GuestPhysical:
    """Guest RAM of an extract directory, read by guest-physical address:
    ``GuestPhysical(dir).read(0x100000, 4096)``; ``.map`` is the layout used."""

    def __init__(self, directory: str, layout: LayoutOptions | None = None) -> None:
        _, doc, entries = read_manifest(directory)
        self.map = (layout or LayoutOptions()).map_for(doc.get("machine"), doc)
        self._paths = {b.name: b.path for b in entries}

    def read(self, gpa: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            r = self.map.locate(gpa)
            if r is None:
                raise UsageError(f"GPA 0x{gpa:x} is not RAM (a hole in the guest-physical map)")
            k = min(size, r.end - gpa)
            with open(self._paths[r.block], "rb") as f:
                f.seek(r.offset + gpa - r.gpa)
                out += f.read(k).ljust(k, b"\0")
            gpa += k
            size -= k
        return bytes(out)
