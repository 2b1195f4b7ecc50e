"""Rebuild a stream's RAM blocks in a directory (the ``extract`` job)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..containers.multifd import with_channels
from ..containers.sources import StreamSource
from ..containers.stream import iter_events
from ..containers.stream import open_decoder
from ..errors import StreamError
from ..events import BlockRecord
from ..events import MappedRamBlock
from ..events import MappedRamPages
from ..events import MultifdPacket
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlock
from ..events import RamBlockList
from ..events import SectionStart
from ..image.diskimage import DiskImages
from ..image.manifest import MANIFEST
from ..image.ramimage import RamImage
from ..wire.grammar import SectionType
from .coverage import PageCoverage
from .coverage import incomplete_ram
from .coverage import multifd_main_alone

# Events that put pages of a block into the image.
_PAGE_EVENTS = (PageRecord, PageRun, MultifdPacket, MappedRamPages)
_IMAGE_EVENTS = (RamBlockList, PageRecord, PageRun, MappedRamBlock, MultifdPacket)


class ExtractResult:
    def __init__(self, manifest: dict, error: StreamError | None, warnings: list) -> None:
        self.manifest = manifest
        self.error = error
        self.warnings = warnings


def extract(
    stream: str | StreamSource,
    directory: str,
    *,
    blocks: set[str] | None = None,
    page_size: int | None = None,
    allow_hook: bool = False,
    progress: Callable[[int], None] | None = None,
    channels: list[str] | None = None,
    until_iteration: int | None = None,
    placement_for: Callable[[RamBlockList | None, Any], dict] | None = None,
) -> ExtractResult:
    """Decode ``stream`` (plus its multifd ``channels`` files) into ``directory``.  A
    stream error does not raise: what was decoded before it is kept and the manifest
    says ``"complete": false`` (as it does when pages were never sent, see
    tools/coverage.py).  Input that is not a stream at all raises StreamError before
    ``directory`` is created.  ``until_iteration=N`` stops before the RAM section
    that follows the N-th RAM PART section: the memory as the destination held it
    after N iterations.  ``stream`` is a path or an opened source (closed here).
    ``placement_for(block list, decoder)`` (``dump``) says where each block's bytes go
    instead of block files (``RamImage``'s ``placement``)."""

    def new_image():
        placement = None
        if placement_for is not None:
            listed = block_list
            if listed is None and held:  # mapped-ram: the blocks come one by one, each with its pages
                listed = RamBlockList(
                    held[0].offset,
                    0,
                    tuple(RamBlock(e.name, e.used_length, addr=e.addr) for e in held if type(e) is MappedRamBlock),
                )
            placement = placement_for(listed, decoder)
        img = RamImage(directory, decoder.page_size or 4096, only=blocks, names=names, placement=placement)
        for held_ev in held:
            img.apply(held_ev)
        held.clear()
        return img

    # With placement_for: a mapped-ram stream's blocks and their pages (views of the
    # file) held until the block list is complete, i.e. until the first other event.
    held: list = []

    with stream if isinstance(stream, StreamSource) else StreamSource(stream) as source:
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        # RamImage applies (or, for a block left out, checks) every page record with
        # decode/pages.py, raising what the decoder would: each delta is decoded once.
        decoder.check_deltas = False
        image = None
        disks = None  # block migration: the disks, beside the RAM blocks
        names = {MANIFEST}  # file names taken in the directory
        error = None
        block_list: RamBlockList | None = None
        sent: set[str] = set()  # blocks that had at least one page record
        parts = 0
        stopped = False
        coverage = PageCoverage(decoder)
        channels = channels or source.channel_paths
        try:
            # A capture directory brings its own multifd channel files.
            for ev in with_channels(iter_events(source, decoder, progress), channels, decoder):
                coverage.add(ev)
                t = type(ev)
                if t in _PAGE_EVENTS:
                    sent.add(ev.block)
                elif t is RamBlockList:
                    block_list = ev
                elif (
                    until_iteration is not None
                    and t is SectionStart
                    and ev.idstr == "ram"
                    and ev.type in (SectionType.PART, SectionType.END)
                ):
                    if parts == until_iteration:
                        stopped = True
                        break
                    parts += ev.type == SectionType.PART
                if t is BlockRecord:
                    if disks is None:
                        disks = DiskImages(directory, names)
                    disks.apply(ev)
                    continue
                if (
                    placement_for is not None
                    and image is None
                    and (t is MappedRamBlock or (held and t is MappedRamPages))
                ):
                    held.append(ev)
                    continue
                if image is None and (t in _IMAGE_EVENTS or held):
                    image = new_image()
                if image is not None:
                    image.apply(ev)
        except StreamError as exc:
            error = exc
        if image is None:
            image = new_image()
        machine = decoder.configuration.machine if decoder.configuration else None
        extra: dict[str, Any] = {"page_size_source": decoder.page_size_source}
        if until_iteration is not None:
            extra["until_iteration"] = until_iteration
            if not stopped and error is None:
                error = StreamError(
                    f"the stream has only {parts} RAM iterations (PART sections), not {until_iteration}",
                    decoder.offset,
                    section="ram",
                )
        if disks is not None:
            extra["disks"] = disks.close()
        if decoder.configuration is not None:
            extra["capabilities"] = list(decoder.configuration.capabilities)
            extra["target_page_bits"] = decoder.configuration.target_page_bits
        warnings = list(decoder.warnings)
        saved = source.save_image
        if saved is not None:
            extra["libvirt"] = saved.as_dict()
            if not saved.complete:
                warnings.append((0, "libvirt save image is incomplete (LibvirtQemudPart): the save never finished"))
        complete = error is None and (stopped or decoder.ram_complete) and (saved is None or saved.complete)
        ignore_shared = bool(decoder.configuration and "x-ignore-shared" in decoder.configuration.capabilities)
        absent = _absent_blocks(block_list, sent, complete and not stopped, ignore_shared, warnings, blocks)
        missing = {name: n for name, n in coverage.missing().items() if blocks is None or name in blocks}
        needs_channels = multifd_main_alone(coverage, missing) and not channels
        incomplete = incomplete_ram(missing, needs_channels) if complete and not stopped else None
        if incomplete:
            complete = False
            warnings.append((decoder.offset, incomplete))
        manifest = image.close(machine=machine, complete=complete, error=str(error) if error else None, extra=extra)
        _annotate_blocks(manifest, block_list, absent, ignore_shared)
        if block_list is not None:
            image.rewrite_manifest(manifest)
        return ExtractResult(manifest, error, warnings)


def _absent_blocks(
    block_list, sent: set[str], complete: bool, ignore_shared: bool, warnings: list, only: set[str] | None
) -> set[str]:
    """Blocks listed in MEM_SIZE of which no page was sent.  In a complete precopy
    stream every migrated block has all its pages sent at least once (the first
    pass sends ZERO records for zero pages), so such a block was not migrated: with
    x-ignore-shared, a shared block (ramblock_is_ignored, migration/ram.c) whose
    content stays in the shared memory backend on the destination."""
    if block_list is None or not complete:
        return set()
    absent = {
        b.name for b in block_list.blocks if b.name not in sent and b.used_length and (only is None or b.name in only)
    }
    for name in sorted(absent):
        why = (
            "x-ignore-shared: a shared RAM block, its content is in the memory backend shared with the "
            "destination, not in the stream"
            if ignore_shared
            else "no page of it is in the stream"
        )
        warnings.append((block_list.offset, f"RAM block {name}: {why}; its file holds zeros, not guest data"))
    return absent


def _annotate_blocks(manifest: dict, block_list, absent: set[str], ignore_shared: bool) -> None:
    addrs = {b.name: b.addr for b in block_list.blocks} if block_list is not None else {}
    for b in manifest["blocks"]:
        if addrs.get(b["name"]) is not None:
            b["addr"] = addrs[b["name"]]  # MemoryRegion address sent with x-ignore-shared
        if b["name"] in absent:
            b["absent"] = True
            if ignore_shared:
                b["ignored_shared"] = True
