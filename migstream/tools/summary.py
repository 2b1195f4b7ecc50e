"""What ``info`` reports: counts gathered from events."""

from __future__ import annotations

from collections import Counter
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from ..containers.multifd import with_channels
from ..containers.sources import StreamSource
from ..containers.stream import iter_events
from ..decode.decoder import StreamDecoder
from ..errors import StreamError
from ..errors import error_dict
from ..events import BlockRecord
from ..events import CommandEvent
from ..events import Configuration
from ..events import DeviceState
from ..events import DirtyBitmapRecord
from ..events import EndOfStream
from ..events import FileHeader
from ..events import MappedRamBlock
from ..events import MultifdPacket
from ..events import MultifdSync
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlockList
from ..events import RamMarker
from ..events import SectionStart
from ..events import Undecoded
from ..events import VmDescription
from ..image.physmap import physical_map_doc
from ..wire.grammar import BLOCK_CHUNK
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_ZERO
from ..wire.grammar import RamFlag
from ..wire.grammar import SectionType
from .coverage import PageCoverage
from .coverage import multifd_main_alone
from .vocabulary import PAGE_KIND_OF_FLAG
from .vocabulary import PAGE_KINDS

#: RAM record kind -> its key in the JSON documents (``info --json`` records,
#: ``records --json`` encoding); the words people read are in tools/vocabulary.py.
ENCODING_NAMES = {flag: PAGE_KINDS[kind].key for flag, kind in PAGE_KIND_OF_FLAG.items()}
_PAGE_KEY, _ZERO_KEY = ENCODING_NAMES[RamFlag.PAGE], ENCODING_NAMES[RamFlag.ZERO]


class StreamSummary:
    """Feed it every event; ``as_dict()`` is the ``info --json`` document."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.configuration: Configuration | None = None
        self.blocks: list = []
        self.sections: Counter = Counter()
        self.ram_parts = 0
        self.records: Counter = Counter()
        self.record_bytes: Counter = Counter()
        self.pages_by_block: dict[str, Counter] = defaultdict(Counter)
        self.markers: Counter = Counter()
        self.devices: list[dict[str, Any]] = []
        self.commands: Counter = Counter()
        self.has_description = False
        self.eof = False
        self.undecoded: str | None = None
        self.page_size: int | None = None
        self.page_size_source: str | None = None
        self.end_offset = 0
        self.multifd_packets = 0
        self.multifd_syncs = 0
        self.block_devices: dict[str, Counter] = defaultdict(Counter)  # block migration, per device
        self.dirty_bitmaps: dict[str, dict] = {}  # "node/bitmap" -> granularity and ranges sent
        self._bitmap_names = (None, None)  # names carried over from the previous record

    def add(self, ev) -> None:
        t = type(ev)
        if t is PageRun:
            pages = ev.count_of(RAM_PAGE)
            zeros = ev.count - pages
            by_block = self.pages_by_block[ev.block]
            if pages:
                self.records[_PAGE_KEY] += pages
                self.record_bytes[_PAGE_KEY] += ev.record_bytes(RAM_PAGE)
                by_block[_PAGE_KEY] += pages
            if zeros:
                self.records[_ZERO_KEY] += zeros
                self.record_bytes[_ZERO_KEY] += ev.record_bytes(RAM_ZERO)
                by_block[_ZERO_KEY] += zeros
        elif t is PageRecord:
            name = ENCODING_NAMES[ev.kind]
            self.records[name] += 1
            self.record_bytes[name] += ev.size
            self.pages_by_block[ev.block][name] += 1
        elif t is MultifdPacket:
            self.multifd_packets += 1
            if ev.normal or ev.zero:  # a packet with pages names its block (SYNC packets need not)
                by_block = self.pages_by_block[ev.block]
            if ev.normal:
                self.records["multifd_page"] += len(ev.normal)
                self.record_bytes["multifd_page"] += ev.payload_size
                by_block["multifd_page"] += len(ev.normal)
            if ev.zero:
                self.records["multifd_zero"] += len(ev.zero)
                by_block["multifd_zero"] += len(ev.zero)
        elif t is MultifdSync:
            self.multifd_syncs += 1
        elif t is DirtyBitmapRecord:
            node, bitmap = self._bitmap_names
            self._bitmap_names = (ev.node or node, ev.bitmap or bitmap)
            name = "/".join(n or "?" for n in self._bitmap_names)
            if ev.granularity is not None:
                self.dirty_bitmaps[name] = {
                    "granularity": ev.granularity,
                    "bitmap_flags": ev.bitmap_flags,
                    "ranges": 0,
                    "zero_ranges": 0,
                    "bytes": 0,
                }
            elif ev.start_sector is not None:
                bm = self.dirty_bitmaps.setdefault(
                    name, {"granularity": None, "bitmap_flags": None, "ranges": 0, "zero_ranges": 0, "bytes": 0}
                )
                bm["ranges"] += 1
                bm["zero_ranges"] += not ev.data
                bm["bytes"] += len(ev.data)
        elif t is BlockRecord:
            if ev.is_chunk:
                disk = self.block_devices[ev.device]
                disk["chunks"] += 1
                disk["zero_chunks"] += ev.is_zero
                disk["bytes"] += len(ev.data)
                disk["extent"] = max(disk["extent"], ev.disk_offset + BLOCK_CHUNK)
        elif t is MappedRamBlock:
            n = ev.pages_written
            if n:
                self.records["mapped_ram"] += n
                self.record_bytes["mapped_ram"] += n * ev.page_size
                self.pages_by_block[ev.name]["mapped_ram"] += n
        elif t is RamMarker:
            self.markers[ev.kind.name] += 1
        elif t is SectionStart:
            self.sections[ev.type.name] += 1
            if ev.idstr == "ram" and ev.type == SectionType.PART:
                self.ram_parts += 1
        elif t is DeviceState:
            self.devices.append(
                {
                    "idstr": ev.idstr,
                    "instance_id": ev.instance_id,
                    "offset": ev.offset,
                    "length": ev.length,
                    "framing": ev.framing,
                }
            )
        elif t is CommandEvent:
            self.commands[ev.name] += 1
        elif t is RamBlockList:
            self.blocks = [
                {
                    "name": b.name,
                    "length": b.used_length,
                    **({"page_size": b.page_size} if b.page_size else {}),
                    **({"addr": b.addr} if b.addr is not None else {}),
                }
                for b in ev.blocks
            ]
        elif t is Configuration:
            self.configuration = ev
        elif t is FileHeader:
            self.version = ev.version
        elif t is VmDescription:
            self.has_description = True
        elif t is EndOfStream:
            self.eof = True
        elif t is Undecoded:
            self.undecoded = ev.reason

    def as_dict(self) -> dict[str, Any]:
        cfg = self.configuration
        return {
            "schema": 1,
            "version": self.version,
            "machine": cfg.machine if cfg else None,
            "page_size": self.page_size,
            "page_size_source": self.page_size_source,
            "target_page_bits": cfg.target_page_bits if cfg else None,
            "capabilities": list(cfg.capabilities) if cfg else [],
            "uuid": cfg.uuid.hex() if cfg and cfg.uuid else None,
            "ram_blocks": self.blocks,
            "sections": dict(self.sections),
            "ram_iterations": self.ram_parts,
            "records": {k: {"count": self.records[k], "bytes": self.record_bytes[k]} for k in self.records},
            "markers": dict(self.markers),
            "pages_by_block": {b: dict(c) for b, c in self.pages_by_block.items()},
            "commands": dict(self.commands),
            "device_sections": len(self.devices),
            "devices": self.devices,
            "has_vmdescription": self.has_description,
            "eof": self.eof,
            "undecoded": self.undecoded,
            "stream_bytes": self.end_offset,
            "multifd_packets": self.multifd_packets,
            "multifd_sync_points": self.multifd_syncs,
            "block_devices": {name: dict(c) for name, c in self.block_devices.items()},
            "dirty_bitmaps": self.dirty_bitmaps,
        }


def info_document(
    source: StreamSource,
    decoder: StreamDecoder,
    channels: Iterable = (),
    progress: Callable[[int], None] | None = None,
    stats: list | None = None,
) -> tuple[dict[str, Any], StreamError | None]:
    """What ``info --json`` prints for an opened ``source`` and its ``decoder``: the
    summary of every event (multifd ``channels`` files, or a capture directory's or
    packet capture's own, merged in), RAM completeness and the pages never sent,
    per-channel counts, warnings, the libvirt header and the packet capture.  A
    stream error does not raise: it is returned beside the document (whose
    ``error`` object says it), with everything decoded before it counted.  The one
    home of this document: ``migstream info`` and ``migstream.open().info()``."""
    summary = StreamSummary()
    coverage = PageCoverage(decoder)
    error = None
    stats = [] if stats is None else stats
    try:
        for ev in with_channels(
            iter_events(source, decoder, progress), list(channels) or source.channel_paths, decoder, stats
        ):
            summary.add(ev)
            coverage.add(ev)
    except StreamError as exc:
        error = exc
    summary.page_size = decoder.page_size
    summary.page_size_source = decoder.page_size_source
    summary.end_offset = decoder.offset
    doc = summary.as_dict()
    missing = coverage.missing() if error is None else {}
    doc["ram_complete"] = decoder.ram_complete and not missing
    doc["pages_never_sent"] = missing
    doc["multifd_main_alone"] = multifd_main_alone(coverage, missing)
    if stats:
        doc["multifd_channels"] = stats
    doc["error"] = error_dict(error) if error else None
    doc["warnings"] = [{"offset": o, "message": m} for o, m in decoder.warnings]
    if source.save_image is not None:
        doc["libvirt"] = source.save_image.as_dict()
    if source.packet_capture is not None:
        capture, migration = source.packet_capture
        doc["capture"] = dict(capture.describe(), selected=migration.number)
    if decoder.trailing is not None:  # e.g. a Proxmox state volume: the stream, then zeros or stale bytes
        start, length, nonzero = decoder.trailing
        doc["after_stream"] = {"offset": start, "length": length, "first_nonzero": nonzero}
    if source.qcow2 is not None and source.snapshot is not None:
        doc["qcow2"] = source.qcow2.describe(source.snapshot)
    doc["physical_map"] = physical_map_doc(doc)
    return doc, error
