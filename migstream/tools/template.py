"""The non-RAM parts of a captured stream, to wrap generated RAM in.

A template is decoded once to find the byte range of every top-level element
(an element runs from its first byte to the first byte of the next one); the
second pass copies the wanted ranges verbatim, so device state is never
re-encoded.  What is kept, in the order the encoder writes it:

* ``configuration``: the CONFIGURATION element (machine name + subsections);
* ``before_ram``: sections before the RAM START (early-setup FULL sections);
* ``during_ram``: non-RAM START/PART/END sections between the RAM START and the
  RAM END (other iterative handlers, e.g. ``spapr/htab``), copied in order;
* ``after_ram``: everything after the RAM END up to EOF (device FULL sections,
  END sections of other handlers);
* ``vmdescription``: the VMDESCRIPTION element after EOF.

QEMU_VM_COMMAND elements (return path, postcopy) are dropped.  In a postcopy
capture the device state travels inside the PACKAGED command (LISTEN, the
device FULL sections, PING, RUN): those FULL sections are taken out of the
package and kept with ``after_ram``, which makes a precopy stream of it.
"""

from __future__ import annotations

import mmap
import tempfile
from dataclasses import dataclass
from dataclasses import field

from ..containers.sources import StreamSource
from ..containers.stream import iter_events
from ..containers.stream import open_decoder
from ..errors import StreamError
from ..errors import UsageError
from ..events import CommandEvent
from ..events import Configuration
from ..events import EndOfStream
from ..events import FileHeader
from ..events import PackageEnd
from ..events import RamBlockList
from ..events import SectionStart
from ..events import Undecoded
from ..events import VmDescription
from ..wire.grammar import Command
from ..wire.grammar import SectionType


@dataclass
class StreamTemplate:
    path: str
    machine: str | None
    page_size: int
    ram_section_id: int
    ram_blocks: tuple  # (name, used_length) from the template's MEM_SIZE
    configuration: bytes = b""
    # Section bytes: views of ``spool`` (bytes-like; write them, do not keep them).
    before_ram: list = field(default_factory=list)
    during_ram: list = field(default_factory=list)
    after_ram: list = field(default_factory=list)
    vmdescription: bytes = b""
    device_sections: int = 0
    #: The capture carried MIG_CMD_SWITCHOVER_START (QEMU 10.0+ machine types send
    #: it before the RAM END section); dropped like every command, but writers that
    #: mimic QEMU 10 byte for byte (mappedram_writer) put it back.
    switchover_start: bool = False
    #: The map of the spool file that the section pieces are views of.
    spool: memoryview | None = field(default=None, repr=False)

    def check_fits(self, machine: str, page_size: int, layout) -> None:
        """RAM of this machine type, page size and block layout can be wrapped in
        this template's configuration and device state; else UsageError."""
        from ..encode.memimage import layout_str

        if self.machine and self.machine != machine:
            raise UsageError(f"template machine type {self.machine} differs from the image's {machine}")
        if self.page_size != page_size:
            raise UsageError(f"template page size {self.page_size} differs from the image's {page_size}")
        if self.ram_blocks and tuple(self.ram_blocks) != tuple(layout):
            raise UsageError(
                f"template RAM blocks differ from the image's: {layout_str(self.ram_blocks)} vs {layout_str(layout)}"
            )

    @classmethod
    def load(cls, path: str, *, page_size: int | None = None, allow_hook: bool = False) -> StreamTemplate:
        try:
            return _load(path, page_size=page_size, allow_hook=allow_hook)
        except StreamError as exc:
            raise UsageError(f"template {path}: {exc}") from None
        except FileNotFoundError:
            raise UsageError(f"template {path}: no such file") from None


def _load(path: str, *, page_size: int | None = None, allow_hook: bool = False) -> StreamTemplate:
    # Pass 1: element boundaries and what each element is.
    starts: list[tuple[int, str, SectionType | None]] = []  # (offset, role, type if a section)
    machine = None
    ram_sid = None
    ram_blocks: tuple = ()
    page_size_override = page_size
    page_size = None
    saw_eof = False
    packages = 0  # PACKAGED nesting at the current event
    switchover_start = False
    with StreamSource(path) as source:
        dec = open_decoder(source, page_size=page_size_override, allow_hook=allow_hook)
        for ev in iter_events(source, dec):
            t = type(ev)
            if t is FileHeader:
                starts.append((ev.offset, "header", None))
            elif t is Configuration:
                machine = ev.machine
                if "x-ignore-shared" in ev.capabilities:
                    # Its MEM_SIZE would need block addresses and shared blocks skipped.
                    raise UsageError(
                        f"template {path}: captured with x-ignore-shared, which the encoder does not produce"
                    )
                starts.append((ev.offset, "configuration", None))
            elif t is SectionStart:
                is_ram = ev.idstr == "ram" and ev.instance_id == 0 and ev.type != SectionType.FULL
                if is_ram:
                    ram_sid = ev.section_id
                role = "ram" if is_ram else "packaged-device" if packages else "device"
                starts.append((ev.offset, role, ev.type))
            elif t is CommandEvent:
                packages += ev.cmd == Command.PACKAGED
                switchover_start |= ev.cmd == Command.SWITCHOVER_START
                starts.append((ev.offset, "command", None))
            elif t is PackageEnd:
                packages -= 1
                starts.append((ev.offset, "package-end", None))
            elif t is EndOfStream:
                saw_eof = True
                starts.append((ev.offset, "eof", None))
            elif t is VmDescription:
                starts.append((ev.offset, "vmdescription", None))
            elif t is RamBlockList:
                ram_blocks = tuple((b.name, b.used_length) for b in ev.blocks)
            elif t is Undecoded:
                raise UsageError(f"template {path}: {ev.reason} (at offset 0x{ev.offset:x})")
        page_size = dec.page_size
        end = dec.offset
    if ram_sid is None:
        raise UsageError(f"template {path}: no RAM section")
    if not saw_eof:
        raise UsageError(f"template {path}: the stream has no QEMU_VM_EOF (truncated capture?)")

    ranges = []
    for i, (off, role, section_type) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else end
        ranges.append((off, stop, role, section_type))

    # Which ranges go where.
    tpl = StreamTemplate(path, machine, page_size or 4096, ram_sid, ram_blocks, switchover_start=switchover_start)
    wanted: list[tuple[int, int, str]] = []  # (start, stop, bucket)
    phase = "before"
    for off, stop, role, section_type in ranges:
        if role == "configuration":
            wanted.append((off, stop, "configuration"))
        elif role == "ram":
            if section_type == SectionType.START:
                phase = "during"
            elif section_type == SectionType.END:
                phase = "after"
        elif role == "packaged-device":
            tpl.device_sections += 1
            wanted.append((off, stop, "after_ram"))
        elif role == "device":
            tpl.device_sections += 1
            wanted.append((off, stop, {"before": "before_ram", "during": "during_ram", "after": "after_ram"}[phase]))
        elif role == "vmdescription":
            wanted.append((off, stop, "vmdescription"))

    # Pass 2: copy the wanted ranges into a spool file (a block migration's disks can
    # be gigabytes); the template hands out views of its map, not copies in memory.
    spool = tempfile.TemporaryFile(prefix="migstream-template-")
    with StreamSource(path) as source:
        pos = 0
        w = 0
        for chunk in source.chunks():
            cend = pos + len(chunk)
            while w < len(wanted) and wanted[w][1] <= pos:
                w += 1
            k = w
            while k < len(wanted) and wanted[k][0] < cend:
                a, b, _ = wanted[k]
                lo, hi = max(a, pos), min(b, cend)
                if lo < hi:
                    spool.write(chunk[lo - pos : hi - pos])
                k += 1
            pos = cend
    # The ranges went to the spool back to back, in order: all of them, or the input
    # ended early.
    if spool.tell() != sum(b - a for a, b, _ in wanted):
        raise UsageError(f"template {path}: could not re-read its sections")
    spool.flush()
    view = memoryview(mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ)) if spool.tell() else memoryview(b"")
    spool.close()  # the map keeps the (unlinked) file
    tpl.spool = view
    at = 0
    for a, b, bucket in wanted:
        piece = view[at : at + b - a]
        at += b - a
        if bucket in ("configuration", "vmdescription"):
            setattr(tpl, bucket, bytes(piece))
        else:
            getattr(tpl, bucket).append(piece)
    return tpl
