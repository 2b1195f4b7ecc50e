"""The ``devices`` job: every non-RAM section of a stream, decoded with the
VMDESCRIPTION where it describes it.

Payloads are copied as they pass (device state is small next to RAM) and decoded
once the description is known: for seekable files it is read first, for pipes
and compressed inputs it arrives after EOF.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..containers.multifd import with_channels
from ..containers.sources import StreamSource
from ..containers.stream import iter_events
from ..containers.stream import open_decoder
from ..decode.description import load_description
from ..decode.vmstate import DescriptionQueue
from ..decode.vmstate import VmstateError
from ..decode.vmstate import decode_s390_storage_attributes
from ..decode.vmstate import decode_spapr_htab
from ..decode.vmstate import decode_vmstate
from ..errors import StreamError
from ..errors import error_dict
from ..events import Configuration
from ..events import DeviceState
from ..events import SectionStart
from ..events import VmDescription
from ..wire.grammar import PBS_STATE_SECTION
from ..wire.grammar import SectionType

#: Hostile-input bound on device payload bytes kept while waiting for the description.
MAX_DEVICE_BYTES = 256 << 20


def device_states(
    stream: str,
    *,
    page_size: int | None = None,
    allow_hook: bool = False,
    channels: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """{"configuration": {...}, "sections": [...], "error": {...}|None, "warnings": [...]}.

    A section whose payload does not match its description gets ``"error"`` and no
    state; the others are still decoded.  Errors are ``errors.error_dict`` objects.
    Multifd ``channels`` (or a capture directory's own) are read too, so that a
    fault in them is reported."""
    with StreamSource(stream) as source:
        description = None
        if source.seekable_file is not None and source.size:
            found = load_description(source.seekable_file, source.size)
            description = found[1] if found else None
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        kept: list[tuple[DeviceState, bytes, int]] = []
        version_id = 0
        configuration = None
        error = None
        total = 0
        try:
            for ev in with_channels(iter_events(source, decoder, progress), channels or source.channel_paths, decoder):
                t = type(ev)
                if t is DeviceState:
                    total += ev.length
                    if total > MAX_DEVICE_BYTES:
                        raise StreamError(f"more than {MAX_DEVICE_BYTES} bytes of device state", ev.offset)
                    kept.append((ev, bytes(ev.data), version_id))
                elif t is SectionStart:
                    version_id = ev.version_id
                elif t is Configuration:
                    configuration = ev
                elif t is VmDescription and description is None:
                    try:
                        description = json.loads(bytes(ev.json))
                    except ValueError:
                        decoder.warnings.append((ev.offset, "VMDESCRIPTION is not valid JSON"))
        except StreamError as exc:
            error = exc
        queue = DescriptionQueue(description)
        sections = [_section(ev, data, version, queue) for ev, data, version in kept]
        config = None
        if configuration is not None:
            config = _configuration(configuration)
            if description and isinstance(description.get("configuration"), dict):
                # QEMU 8.2+ describes the configuration section too: decode it like a device.
                try:
                    config["state"] = decode_vmstate(
                        configuration.data,
                        description["configuration"],
                        offset=configuration.offset + 1,
                        device="configuration",
                    )
                except VmstateError as exc:
                    config["error"] = error_dict(exc)
        doc = {
            "configuration": config,
            "page_size": decoder.page_size,
            "has_description": description is not None,
            "sections": sections,
            "error": error_dict(error) if error else None,
            "warnings": [{"offset": o, "message": m} for o, m in decoder.warnings],
        }
        if source.save_image is not None:
            doc["libvirt"] = source.save_image.as_dict()
        return doc


def _configuration(cfg: Configuration) -> dict[str, Any]:
    return {
        "machine": cfg.machine,
        "target_page_bits": cfg.target_page_bits,
        "capabilities": list(cfg.capabilities),
        "uuid": cfg.uuid.hex() if cfg.uuid else None,
    }


def _section(ev: DeviceState, data: bytes, version_id: int, queue: DescriptionQueue) -> dict:
    live = ev.section_type != SectionType.FULL
    out: dict[str, Any] = {
        "offset": ev.offset,
        "section_id": ev.section_id,
        "type": ev.section_type.name,
        "idstr": ev.idstr,
        "instance_id": ev.instance_id,
        "version_id": version_id,
        "size": ev.length,
        "framing": ev.framing,
    }
    if live:
        # Iterative sections are not in the JSON (only vmstate_save writes it).
        out["iterative"] = True
        try:
            if ev.idstr == "spapr/htab":
                out["state"] = decode_spapr_htab(data, ev.section_type, offset=ev.offset)
            elif ev.idstr == PBS_STATE_SECTION:
                out["state"] = {"blob_length": len(data) - 8}
                out["note"] = "Proxmox Backup Server state (pve-qemu pbs-state.c), opaque"
            elif ev.idstr == "s390-storage_attributes":
                out["state"] = decode_s390_storage_attributes(data, offset=ev.offset)
        except VmstateError as exc:
            out["error"] = error_dict(exc)
        return out
    desc = queue.next(ev.idstr, ev.instance_id)
    if desc is None:
        out["state"] = None
        out["note"] = "not in the VMDESCRIPTION"
        return out
    out["vmsd_name"] = desc.get("vmsd_name")
    try:
        out["state"] = decode_vmstate(data, desc, offset=ev.offset, device=ev.idstr)
    except VmstateError as exc:
        out["state"] = None
        out["error"] = error_dict(exc)
    return out
