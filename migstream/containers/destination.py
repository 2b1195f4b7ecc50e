"""The destination's devices, given by the user (``validate --description FILE``): a
stream without a VMDESCRIPTION (postcopy) is checked against another capture of the
same VM, or against QEMU's ``-dump-vmstate`` names."""

from __future__ import annotations

import json
from typing import Any

from ..decode.description import load_description
from ..decode.sections import DeviceNames
from ..decode.sections import SectionRegistry
from ..errors import MigstreamError
from ..events import VmDescription
from ..wire.limits import MAX_DESCRIPTION
from .sources import StreamSource
from .stream import iter_events
from .stream import open_decoder


def load_destination(path: str) -> tuple[dict[str, Any] | None, DeviceNames | None]:
    """(VMDESCRIPTION, None) from a stream, qcow2 snapshot, libvirt image or the
    description's JSON; (None, names) from a -dump-vmstate JSON."""
    try:
        with open(path, "rb") as f:
            head = f.read(1)
            if head in (b"{", b"["):
                f.seek(0)
                text = f.read(MAX_DESCRIPTION + 1)
                if len(text) > MAX_DESCRIPTION:
                    raise MigstreamError(f"{path}: more than {MAX_DESCRIPTION} bytes of JSON")
                return _from_json(path, text)
    except OSError:
        pass  # IMAGE@SNAPSHOT and the like: StreamSource says what is wrong
    with StreamSource(path) as source:
        if source.seekable_file is not None and source.size:
            found = load_description(source.seekable_file, source.size)
            if found:
                return found[1], None
        decoder = open_decoder(source, use_description=False)
        for ev in iter_events(source, decoder):
            if type(ev) is VmDescription:
                return _from_json(path, ev.json)
    raise MigstreamError(f"{path}: the stream has no VMDESCRIPTION (a postcopy stream has none)")


def _from_json(path: str, text: bytes) -> tuple[dict[str, Any] | None, DeviceNames | None]:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MigstreamError(f"{path}: not JSON ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("devices"), list):
        if not SectionRegistry(doc).known:
            raise MigstreamError(f"{path}: the VMDESCRIPTION lists no devices QEMU would write")
        return doc, None
    if isinstance(doc, dict) and any(isinstance(v, dict) and "Description" in v for v in doc.values()):
        return None, DeviceNames.from_dump(f"-dump-vmstate {path}", doc)
    raise MigstreamError(f"{path}: neither a VMDESCRIPTION (no 'devices') nor QEMU's -dump-vmstate JSON")
