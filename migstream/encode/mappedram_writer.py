"""Writing mapped-ram migration files (QEMU 9.0+, ``file:`` URI, capability mapped-ram).

What QEMU's source writes to a ``file:`` URI when mapped-ram is on (migration/ram.c
``ram_save_setup``/``mapped_ram_setup_ramblock``, ``save_zero_page``,
``ram_save_file_bmap``, ``ram_save_complete``; docs/devel/migration/mapped-ram.rst;
checked byte for byte against QEMU 10.0's samples/q10-mapped-ram):

* file header, then the configuration with ``configuration/capabilities`` listing
  ``mapped-ram`` (savevm.c: the destination refuses the file unless its own
  capability matches), then device sections the template has before RAM;
* the RAM START section: the MEM_SIZE record, where every block entry (name, used
  length) is followed by its MappedRamHeader (version 1, page size, bitmap_offset
  = the byte after the header, pages_offset = the end of the bitmap rounded up to
  1 MiB); the stream then continues at ``pages_offset + used_length``, so each
  block's page region lies between its header and the next entry;
* page i of a block at ``pages_offset + i * page_size``; zero pages are never
  written (``save_zero_page`` only clears their bit), so the file is sparse;
* EOS closes START; each later round is a PART section holding only EOS (the pages
  go to their fixed offsets, not into the section); QEMU 10 machine types then send
  MIG_CMD_SWITCHOVER_START; END holds only EOS, after the bitmaps (one host
  ``unsigned long`` array per block, little-endian here as on x86/arm64 hosts) were
  written at their ``bitmap_offset``;
* device FULL sections, EOF, VMDESCRIPTION.

With multifd the channels pwritev pages into the same regions and the main channel
carries neither packets nor MULTIFD_FLUSH: the file layout is the same, so there is
nothing different to write for ``mapped-ram`` + ``multifd``.

Rounds (later images) do not change the layout: QEMU rewrites dirty pages in place
and clears the bit of a page that became zero, so the file holds the last image's
pages; each round is one PART section with EOS only.

Hot path: zero pages are found a chunk at a time with numpy (``zero_page_mask``);
each run of consecutive non-zero pages is one ``pwrite`` straight from the image's
mmap, done by writer threads while the next chunk is scanned.  No Python work per
zero page, none per non-zero page beyond its run.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..image.pwrite import pwrite_all
from ..wire import build as writer
from ..wire import grammar as g
from ..wire.fastpath import RAM_HEADER
from .configuration import DEFAULT_RAM_SECTION_ID
from .configuration import target_page_bits
from .memimage import MemoryImage
from .stats import RamStats
from .zeropages import zero_page_mask

MAPPED_RAM = "mapped-ram"
#: Capabilities that change the layout; we write neither.
_UNSUPPORTED_CAPABILITIES = {"x-ignore-shared": "x-ignore-shared blocks (header offsets 0, no region)"}
#: Pages scanned per step (64 MiB of 4 KiB pages): bounds temporary memory.
CHUNK_PAGES = 16384
#: Writer threads and chunks in flight.
WRITER_THREADS = 2
IN_FLIGHT = 4


@dataclass(frozen=True)
class BlockRegion:
    """Where one block's header, bitmap and pages go in the file."""

    name: str
    used_length: int
    entry_offset: int  # the MEM_SIZE block entry (name, used_length, header)
    bitmap_offset: int
    bitmap_size: int
    pages_offset: int

    @property
    def end(self) -> int:
        """Where the stream continues after this block (mapped_ram_setup_ramblock's seek)."""
        return self.pages_offset + self.used_length


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def block_entry(name: str, used_length: int, page_size: int, bitmap_offset: int, pages_offset: int) -> bytes:
    """A MEM_SIZE block entry with its MappedRamHeader, from the grammar."""
    return g.MappedRamBlockEntry.build(
        {
            "idstr": name,
            "used_length": used_length,
            "page_size": None,
            "addr": None,
            "mapped_ram": {
                "version": g.MAPPED_RAM_HDR_VERSION,
                "page_size": page_size,
                "bitmap_offset": bitmap_offset,
                "pages_offset": pages_offset,
            },
        },
        ignore_shared=False,
        postcopy_hugepages=False,
    )


def plan_regions(first_entry_offset: int, layout, page_size: int) -> list[BlockRegion]:
    """The file offsets QEMU's mapped_ram_setup_ramblock gives each block when the
    first block entry starts at ``first_entry_offset``."""
    regions = []
    at = first_entry_offset
    for name, used_length in layout:
        entry_len = len(block_entry(name, used_length, page_size, 0, 0))
        bitmap_offset = at + entry_len  # right after the header
        size = g.mapped_ram_bitmap_size(used_length, page_size)
        pages_offset = _round_up(bitmap_offset + size, g.MAPPED_RAM_FILE_OFFSET_ALIGNMENT)
        regions.append(BlockRegion(name, used_length, at, bitmap_offset, size, pages_offset))
        at = pages_offset + used_length
    return regions


def mapped_ram_configuration(
    machine: str, *, template_configuration: bytes = b"", target_page_bits: int | None = None
) -> bytes:
    """The CONFIGURATION element with ``mapped-ram`` among the capabilities.  A
    template's configuration (machine name, target-page-bits, uuid, other
    capabilities) is kept, re-built from the grammar with the capability added."""
    caps: list[str] = []
    uuid = None
    if template_configuration:
        try:
            cfg = writer.parse_configuration(template_configuration)
        except ValueError as exc:
            raise UsageError(f"template configuration cannot be re-built: {exc}") from None
        machine, target_page_bits = cfg["machine"], cfg["target_page_bits"]
        caps, uuid = cfg["capabilities"], cfg["uuid"]
    for cap in caps:
        if cap in _UNSUPPORTED_CAPABILITIES:
            raise UsageError(
                f"the template has capability {cap}: {_UNSUPPORTED_CAPABILITIES[cap]} are not written with --mapped-ram"
            )
    if MAPPED_RAM not in caps:
        caps.append(MAPPED_RAM)
    return writer.configuration(machine, target_page_bits=target_page_bits, capabilities=caps, uuid=uuid)


def check_output_fd(fd: int) -> None:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise UsageError(
            "mapped-ram output must be a regular file: QEMU reads it with a file: URI "
            "and the writer seeks (pages go to fixed offsets)"
        )


class MappedRamWriter:
    """One mapped-ram file from memory images (the last one is what the file holds)."""

    def __init__(
        self, fd: int, first: MemoryImage, *, template=None, progress: Callable[[int, int], None] | None = None
    ) -> None:
        check_output_fd(fd)
        self.fd = fd
        self.page_size = first.page_size
        self.machine = first.machine
        self.layout = first.block_layout()
        self.template = template
        self.first = first
        if template is not None:
            template.check_fits(self.machine, self.page_size, self.layout)
            self.section_id = template.ram_section_id
        else:
            self.section_id = DEFAULT_RAM_SECTION_ID
        self.progress = progress
        self.stats = RamStats(page_size=self.page_size)
        self.stats.total = sum(n for _, n in self.layout)
        self._done = 0

    # --- the stream around the regions ------------------------------------------------

    def _head(self) -> bytes:
        """Everything before the first block entry."""
        tpl = self.template
        if tpl is not None:
            config = mapped_ram_configuration(self.machine, template_configuration=tpl.configuration)
        else:
            config = mapped_ram_configuration(
                self.machine, target_page_bits=target_page_bits(self.machine, self.page_size)
            )
        out = [writer.file_header(), config]
        if tpl is not None:
            out += tpl.before_ram
        out.append(writer.section_start(self.section_id, "ram", 0, g.RAM_SECTION_VERSION))
        out.append(RAM_HEADER.pack(self.stats.total | g.RamFlag.MEM_SIZE))
        return b"".join(out)

    def _tail(self, rounds: int) -> bytes:
        """EOS of START, one PART per round, [SWITCHOVER_START], END, devices, EOF,
        VMDESCRIPTION."""
        sid = self.section_id
        eos = RAM_HEADER.pack(g.RamFlag.EOS)
        out = [eos + writer.footer(sid)]
        tpl = self.template
        if tpl is not None:
            out += tpl.during_ram
        for _ in range(rounds):
            out.append(writer.section_part(sid) + eos + writer.footer(sid))
        if tpl is not None and tpl.switchover_start:
            out.append(writer.command(g.Command.SWITCHOVER_START, b""))
        out.append(writer.section_part(sid, end=True) + eos + writer.footer(sid))
        if tpl is not None:
            out += tpl.after_ram
        out.append(writer.eof())
        if tpl is not None and tpl.vmdescription:
            out.append(tpl.vmdescription)
        return b"".join(out)

    def write(self, images: Sequence[MemoryImage]) -> RamStats:
        final = images[-1]
        for img in images:
            img.check_same_vm(self.first)
        st = self.stats
        ps = self.page_size
        head = self._head()
        regions = plan_regions(len(head), self.layout, ps)
        pwrite_all(self.fd, head, 0)
        for r in regions:
            pwrite_all(self.fd, block_entry(r.name, r.used_length, ps, r.bitmap_offset, r.pages_offset), r.entry_offset)
        # ram_save_setup's sync, one per later round (migration_bitmap_sync), and
        # the completion's.
        st.dirty_sync_count = 1 + len(images)
        st.iterations = len(images)
        st.part_sections = len(images)
        total_pages = st.total // ps
        bitmaps = []
        with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="mapped-ram") as pool:
            pending: deque = deque()
            for r, blk in zip(regions, final.blocks):
                written = self._write_block(blk.data, r, pool, pending, total_pages)
                bitmaps.append(written)
            while pending:
                pending.popleft().result()
        # ram_save_complete: the bitmaps, at the offsets the headers announced.
        for r, written in zip(regions, bitmaps):
            bits = np.packbits(written, bitorder="little").tobytes()
            pwrite_all(self.fd, bits.ljust(r.bitmap_size, b"\0"), r.bitmap_offset)
            st.transferred += r.bitmap_size
        end = regions[-1].end if regions else len(head)
        tail = self._tail(len(images))
        pwrite_all(self.fd, tail, end)
        st.stream_bytes = end + len(tail)
        os.lseek(self.fd, st.stream_bytes, os.SEEK_SET)
        return st

    def _write_block(self, data: np.ndarray, r: BlockRegion, pool, pending: deque, total_pages: int) -> np.ndarray:
        """Write the non-zero pages of one block into its region; returns which
        pages were written (the bitmap's bits)."""
        ps = self.page_size
        npages = r.used_length // ps
        written = np.zeros(npages, bool)
        mv = data.data  # the array's buffer, not a copy
        for first in range(0, npages, CHUNK_PAGES):
            last = min(npages, first + CHUNK_PAGES)
            nonzero = ~zero_page_mask(data[first * ps : last * ps], ps)
            written[first:last] = nonzero
            n = int(np.count_nonzero(nonzero))
            self.stats.normal += n
            self.stats.duplicate += (last - first) - n
            self.stats.transferred += n * ps
            if n:
                edges = np.flatnonzero(np.diff(np.concatenate(([False], nonzero, [False])).view(np.int8)))
                starts = (edges[0::2] + first).tolist()
                stops = (edges[1::2] + first).tolist()
                pending.append(pool.submit(_write_runs, self.fd, mv, starts, stops, ps, r.pages_offset))
                while len(pending) > IN_FLIGHT:
                    pending.popleft().result()
            self._done += last - first
            if self.progress is not None:
                self.progress(self._done, total_pages)
        return written


def _write_runs(fd: int, mv: memoryview, starts: list[int], stops: list[int], ps: int, base: int) -> None:
    """One pwrite per run of non-zero pages, from the image straight to the file."""
    for a, b in zip(starts, stops):
        pwrite_all(fd, mv[a * ps : b * ps], base + a * ps)


def encode_mapped_ram(
    images: Sequence[MemoryImage], fd: int, *, template=None, progress: Callable[[int, int], None] | None = None
) -> RamStats:
    """Write a mapped-ram file of ``images`` (first: bulk stage, later ones: rounds;
    the file holds the last) to ``fd``, a regular file written from offset 0."""
    if not images:
        raise UsageError("no memory image to encode")
    return MappedRamWriter(fd, images[0], template=template, progress=progress).write(images)
