"""The VMDESCRIPTION JSON: finding it in a seekable stream, and what it tells.

QEMU writes ``0x06, be32 len, len bytes of JSON`` after QEMU_VM_EOF (savevm.c).  In
a seekable file it is the last thing, so it can be found before decoding: a
position p where byte p is 0x06, the be32 after it equals the bytes left after it,
and the JSON starts with ``{``.  That check is exact, unlike analyze-migration.py's
"last NUL byte" heuristic.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ..wire.grammar import SectionType
from ..wire.limits import MAX_DESCRIPTION
from ..wire.limits import MAX_SUBSECTION_DEPTH


def find_description(tail: bytes, total_size: int) -> tuple[int, bytes] | None:
    """Find the VMDESCRIPTION in ``tail`` (the last bytes of a stream of
    ``total_size`` bytes).  Returns (stream offset of the 0x06 byte, JSON bytes)."""
    base = total_size - len(tail)
    marker = bytes([SectionType.VMDESCRIPTION])
    pos = tail.rfind(marker)
    while pos >= 0:
        if pos + 6 <= len(tail):
            (length,) = struct.unpack_from(">I", tail, pos + 1)
            if length == len(tail) - pos - 5 and tail[pos + 5 : pos + 6] == b"{":
                return base + pos, bytes(tail[pos + 5 :])
        pos = tail.rfind(marker, 0, pos)
    return None


def load_description(fileobj, total_size: int, max_size: int = MAX_DESCRIPTION) -> tuple[int, dict] | None:
    """Read the description from a seekable binary file, or None if it has none."""
    # Descriptions are usually tens of KiB: look at a small tail first.
    want = 1 << 18
    while True:
        want = min(want, total_size, max_size + 5)
        fileobj.seek(total_size - want)
        tail = fileobj.read(want)
        found = find_description(tail, total_size)
        if found or want >= min(total_size, max_size + 5):
            break
        want *= 16
    if not found:
        return None
    offset, text = found
    try:
        desc = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: RecursionError
        return None
    # The description comes from the stream: anything but a JSON object is unusable.
    return (offset, desc) if isinstance(desc, dict) else None


def _count(value: Any, default: int) -> int:
    """A non-negative JSON integer, or ValueError (the description is untrusted)."""
    if value is None:
        return default
    if type(value) is not int or value < 0:
        raise ValueError(f"not a size: {value!r}")
    return value


def description_page_size(desc: dict[str, Any]) -> int | None:
    """The description's ``page_size`` if it is a positive integer (the decoder
    checks the range), else None."""
    value = desc.get("page_size")
    return value if type(value) is int and value > 0 else None


def vmsd_payload_size(desc: dict[str, Any]) -> int:
    """Bytes a vmstate payload occupies, from its description.

    Each field's ``size`` is what QEMU measured while writing one element
    (vmsd_desc_field_end); compressed arrays give it once with ``array_len``.
    Each subsection costs its header (0x05, u8 name length, name, be32 version).
    """
    return _payload_size(desc, 0)


def _payload_size(desc: Any, depth: int) -> int:
    # Raises ValueError for anything QEMU's JSON writer would not produce.
    if not isinstance(desc, dict) or depth > MAX_SUBSECTION_DEPTH:
        raise ValueError("malformed device description")
    fields, subs = desc.get("fields", []), desc.get("subsections", [])
    if not isinstance(fields, list) or not isinstance(subs, list):
        raise ValueError("malformed device description")
    total = 0
    for f in fields:
        if not isinstance(f, dict):
            raise ValueError("malformed field description")
        total += _count(f.get("size"), 0) * _count(f.get("array_len"), 1)
    for sub in subs:
        name = sub.get("vmsd_name", "") if isinstance(sub, dict) else None
        if not isinstance(name, str):
            raise ValueError("malformed subsection description")
        total += 1 + 1 + len(name.encode()) + 4 + _payload_size(sub, depth + 1)
    return total


def device_key(dev: dict[str, Any]) -> tuple[str | None, Any]:
    """(idstr, instance_id) as the stream carries them.  The JSON writes the
    instance id as a signed int (ppc64's spapr devices: -2147483648 for the
    stream's 0x80000000), the section header as be32: compare them unsigned."""
    iid = dev.get("instance_id")
    return dev.get("name"), (int(iid) & 0xFFFFFFFF) if isinstance(iid, int) else iid


class DeviceIndex:
    """(idstr, instance_id) -> the device descriptions, in stream order."""

    def __init__(self, description: dict[str, Any]) -> None:
        self._devices: dict[tuple[str | None, Any], list[dict]] = {}
        devices = description.get("devices") if isinstance(description, dict) else None
        for dev in devices if isinstance(devices, list) else ():
            if isinstance(dev, dict) and isinstance(dev.get("name"), str) and type(dev.get("instance_id")) is int:
                self._devices.setdefault(device_key(dev), []).append(dev)

    def next_size(self, idstr: str, instance_id: int) -> int | None:
        """Payload size of the next FULL section of this device, if described."""
        queue = self._devices.get((idstr, instance_id))
        if not queue:
            return None
        try:
            return vmsd_payload_size(queue.pop(0))
        except ValueError:
            return None  # a malformed entry: frame the section without it
