"""Device state: a FULL section's payload interpreted with its VMDESCRIPTION entry.

QEMU describes every vmstate it wrote in the JSON after EOF (vmstate.c,
vmsd_desc_field_start/end; savevm.c vmstate_save).  Each field entry has a
``name``, a VMStateInfo ``type`` and the ``size`` in bytes that one element took
on the wire; arrays that QEMU could "compress" appear once with ``array_len``,
others once per element with ``index``; ``struct`` fields carry a nested
``struct`` description (fields + subsections); ``subsections`` lists, in wire
order, only the subsections that were sent, each introduced on the wire by
``0x05, u8 name length, name, be32 version_id`` (vmstate_subsection_save).

Values: integers by their type's signedness, big-endian (``qemu_put_be*``) except
``int32 le``; ``bool`` as a bool; ``nullptr`` (a NULL pointer element, the byte
``'0'`` 0x30, vmstate_info_nullptr) as None; nested structs as dicts; arrays as
lists; everything else (buffers, bitmaps, timers, floats, device-specific
encodings) as a hex string of exactly ``size`` bytes.  Every field is read by its
``size``, so a type this module does not know still frames correctly.

Pure: bytes in, Python values out; no I/O, nothing above the engine layer.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import MigstreamError
from ..wire.grammar import SectionType
from .description import device_key

#: VMStateInfo names read as big-endian signed / unsigned integers.
# "int32 le" is "less or equal" (vmstate_info_int32_le checks loaded <= current), big-endian.
SIGNED = frozenset({"int8", "int16", "int32", "int64", "int32 equal", "int64 equal", "int32 le"})
UNSIGNED = frozenset(
    {"uint8", "uint16", "uint32", "uint64", "uint8 equal", "uint16 equal", "uint32 equal", "uint64 equal"}
)
NULLPTR_MARKER = 0x30  # VMS_NULLPTR_MARKER, migration/vmstate-types.c
MAX_DEPTH = 64  # nesting limit for hostile descriptions
MAX_ELEMENTS = 1 << 22  # array_len limit for hostile descriptions


class VmstateError(MigstreamError):
    """A payload that does not match its description (offset = stream offset)."""

    def __init__(self, message: str, offset: int, *, device: str | None = None, path: str | None = None) -> None:
        where = f"offset 0x{offset:x}"
        if device:
            where += f", device {device}"
        if path:
            where += f", field {path}"
        super().__init__(f"error at {where}: {message}")
        self.offset = offset
        self.device = device
        self.path = path


class Undescribed(VmstateError):
    """The payload goes on where the description has no layout for it."""


class _Reader:
    __slots__ = ("data", "pos", "base", "device")

    def __init__(self, data, base: int, device: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.base = base
        self.device = device

    def take(self, n: int, path: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise VmstateError(
                f"payload ends inside the field (needs {n} bytes, {len(self.data) - self.pos} left)",
                self.base + self.pos,
                device=self.device,
                path=path,
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None


def _field_value(r: _Reader, field: dict, path: str, depth: int) -> Any:
    typ = field.get("type")
    size = int(field.get("size", 0))
    if typ == "struct" and field.get("struct") == {} and size == 1:
        # An array of pointers whose elements were all NULL: QEMU wrote the nullptr
        # marker but described the field as an (empty) struct.
        if r.peek() == NULLPTR_MARKER:
            r.take(1, path)
            return None
        raise Undescribed(
            "a non-NULL element of an array of pointers whose description only covers "
            "NULL elements (QEMU before 10.0 described such arrays by their first element)",
            r.base + r.pos,
            device=r.device,
            path=path,
        )
    if typ == "struct" and isinstance(field.get("struct"), dict):
        start = r.pos
        value = _read_vmsd(r, field["struct"], path, depth + 1)  # partial structs are lost on Undescribed
        used = r.pos - start
        if size and used != size:
            raise VmstateError(
                f"struct took {used} bytes, the description says {size}", r.base + start, device=r.device, path=path
            )
        return value
    raw = r.take(size, path)
    if typ == "bool" and size == 1:
        return raw[0] != 0
    if typ == "nullptr":
        if size == 1 and raw[0] == NULLPTR_MARKER:
            return None
        raise VmstateError(
            f"nullptr field is {raw.hex()}, expected 30", r.base + r.pos - size, device=r.device, path=path
        )
    if typ == "capability" and size >= 1 and raw[0] == size - 1:
        # configuration/capabilities: u8 length + capability name (savevm.c put_capability)
        return raw[1:].decode("latin-1")
    if size in (1, 2, 4, 8):
        if typ in SIGNED:
            return int.from_bytes(raw, "big", signed=True)
        if typ in UNSIGNED:
            return int.from_bytes(raw, "big", signed=False)
    return raw.hex()


def _expanded(fields: list) -> list[tuple[dict, int | None, int]]:
    """(field, index, count): compressed arrays (array_len) stay one entry."""
    out: list[tuple[dict, int | None, int]] = []
    for f in fields:
        n = f.get("array_len")
        if n is not None:
            n = int(n)
            if not 0 <= n <= MAX_ELEMENTS:
                raise ValueError(f"array_len {n}")
            out.append((f, 0, n))
        else:
            out.append((f, f.get("index"), 1))
    return out


def _read_vmsd(r: _Reader, desc: dict, path: str, depth: int = 0, out: dict | None = None) -> dict:
    """Fields then subsections of one vmstate description, stored into ``out`` as
    they are read (so that a partial result survives an Undescribed stop)."""
    if depth > MAX_DEPTH:
        raise VmstateError("description nested too deeply", r.base + r.pos, device=r.device, path=path)
    if out is None:
        out = {}
    try:
        entries = _expanded(desc.get("fields", ()))
    except ValueError as exc:
        raise VmstateError(f"unusable description: {exc}", r.base + r.pos, device=r.device, path=path) from exc
    for field, index, count in entries:
        name = str(field.get("name"))
        sub = f"{path}.{name}" if path else name
        if field.get("array_len") is not None:
            out[name] = lst = []
            for i in range(count):
                lst.append(_field_value(r, field, f"{sub}[{i}]", depth))
        elif index is not None:
            lst = out.setdefault(name, [])
            if not isinstance(lst, list):
                raise VmstateError(
                    "element of an array whose name is also a plain field", r.base + r.pos, device=r.device, path=sub
                )
            lst.append(_field_value(r, field, f"{sub}[{index}]", depth))
        else:
            out[name] = _field_value(r, field, sub, depth)
    for subdesc in desc.get("subsections", ()):
        want = str(subdesc.get("vmsd_name", ""))
        at = r.base + r.pos
        if r.peek() != SectionType.SUBSECTION:
            got = r.peek()
            raise VmstateError(
                f"subsection {want} expected (0x05), found {'end of payload' if got is None else hex(got)}",
                at,
                device=r.device,
                path=path,
            )
        r.take(1, path)
        n = r.take(1, path)[0]
        name = r.take(n, path).decode("latin-1")
        (version,) = struct.unpack(">I", r.take(4, path))
        if name != want:
            raise VmstateError(
                f"subsection '{name}' where the description has '{want}'", at, device=r.device, path=path
            )
        value: dict = {}
        out[name] = value
        _read_vmsd(r, subdesc, f"{path}/{name}" if path else name, depth + 1, value)
        if isinstance(value, dict) and subdesc.get("version") is not None and version != subdesc.get("version"):
            raise VmstateError(
                f"subsection {name} version {version}, description says {subdesc.get('version')}",
                at,
                device=r.device,
                path=path,
            )
    return out


def decode_vmstate(payload, description: dict, *, offset: int = 0, device: str = "") -> dict:
    """The state of one FULL section: {field: value, subsection name: {...}}.

    Raises VmstateError when the payload does not match the description or has
    bytes left over.  Where the description stops covering the payload (see
    Undescribed) the state holds what was decoded, plus ``"__undescribed__"``:
    the offset, the reason and the remaining bytes as hex."""
    r = _Reader(payload, offset, device)
    state: dict[str, Any] = {}
    try:
        _read_vmsd(r, description, "", 0, state)
    except (AttributeError, TypeError, ValueError) as exc:
        # A description that is not shaped like QEMU's (hostile or damaged JSON).
        raise VmstateError(
            f"unusable description: {exc.__class__.__name__}: {exc}", offset + r.pos, device=device
        ) from exc
    except Undescribed as exc:
        state["__undescribed__"] = {"offset": exc.offset, "reason": str(exc), "bytes": r.data[r.pos :].hex()}
        return state
    if r.pos != len(r.data):
        raise VmstateError(
            f"{len(r.data) - r.pos} bytes of payload left after the described fields", offset + r.pos, device=device
        )
    return state


class DescriptionQueue:
    """The JSON's device entries, handed out in stream order per (idstr, instance)."""

    def __init__(self, description: dict | None) -> None:
        self._queues: dict[tuple, list[dict]] = {}
        for dev in (description or {}).get("devices", ()):
            self._queues.setdefault(device_key(dev), []).append(dev)

    def next(self, idstr: str, instance_id: int) -> dict | None:
        q = self._queues.get((idstr, instance_id & 0xFFFFFFFF))
        return q.pop(0) if q else None


# --- iterative non-RAM sections with a simple format ------------------------------------

HASH_PTE_SIZE_64 = 16  # hw/ppc/spapr.c: two be64 words per hash PTE


def decode_spapr_htab(payload, section_type: SectionType, *, offset: int = 0) -> dict:
    """spapr/htab (hw/ppc/spapr.c htab_save_setup / _iterate / _complete):

    START: be32 htab_shift, or -1 when no hash page table exists (radix, or not
    allocated yet).  PART/END: be32 header, -1 (no HPT: nothing follows) or 0,
    then chunks ``be32 index, be16 n_valid, be16 n_invalid`` each followed by
    n_valid HPTEs of 16 bytes, ended by a chunk of zeros (0, 0, 0)."""
    data = bytes(payload)
    if len(data) < 4:
        raise VmstateError(f"spapr/htab payload of {len(data)} bytes", offset, device="spapr/htab")
    (head,) = struct.unpack_from(">i", data)
    if section_type == SectionType.START:
        if len(data) != 4:
            raise VmstateError(
                f"spapr/htab START payload of {len(data)} bytes, expected 4", offset, device="spapr/htab"
            )
        return {"htab_shift": head}
    if head == -1:
        if len(data) != 4:
            raise VmstateError("spapr/htab: data after the 'no HPT' header", offset + 4, device="spapr/htab")
        return {"hpt": False}
    if head != 0:
        raise VmstateError(f"spapr/htab iteration header {head}, expected 0 or -1", offset, device="spapr/htab")
    pos = 4
    chunks = valid = invalid = 0
    while True:
        if pos + 8 > len(data):
            raise VmstateError("spapr/htab chunk header runs past the section", offset + pos, device="spapr/htab")
        index, n_valid, n_invalid = struct.unpack_from(">IHH", data, pos)
        pos += 8
        if index == 0 and n_valid == 0 and n_invalid == 0:
            break
        need = n_valid * HASH_PTE_SIZE_64
        if pos + need > len(data):
            raise VmstateError("spapr/htab HPTEs run past the section", offset + pos, device="spapr/htab")
        pos += need
        chunks += 1
        valid += n_valid
        invalid += n_invalid
    if pos != len(data):
        raise VmstateError(
            f"{len(data) - pos} bytes after the spapr/htab end marker", offset + pos, device="spapr/htab"
        )
    return {"hpt": True, "chunks": chunks, "valid_hptes": valid, "invalid_hptes": invalid}


# hw/s390x/s390-stattrib.c: STATTR_FLAG_* in the low bits of each be64 word.
STATTR_FLAG_EOS, STATTR_FLAG_MORE, STATTR_FLAG_ERROR, STATTR_FLAG_DONE = 0x01, 0x02, 0x04, 0x08
S390_PAGE_SIZE = 4096  # TARGET_PAGE_SIZE on s390x


def decode_s390_storage_attributes(payload, *, offset: int = 0) -> dict:
    """s390-storage_attributes (cmma_save / cmma_load): be64 words whose low bits
    are flags; MORE is followed by be64 count and count attribute bytes, one per
    page from the word's page address; DONE marks the final pass; EOS ends the
    section's payload (and is all a START carries)."""
    data = bytes(payload)
    pos = 0
    runs = pages = 0
    done = False
    first_gfn = None
    while True:
        if pos + 8 > len(data):
            raise VmstateError(
                "s390-storage_attributes ends without EOS", offset + pos, device="s390-storage_attributes"
            )
        (word,) = struct.unpack_from(">Q", data, pos)
        pos += 8
        flags = word & (S390_PAGE_SIZE - 1)
        if flags == STATTR_FLAG_EOS:
            break
        if flags == STATTR_FLAG_DONE:
            done = True
        elif flags == STATTR_FLAG_MORE:
            if pos + 8 > len(data):
                raise VmstateError(
                    "s390-storage_attributes count runs past the section",
                    offset + pos,
                    device="s390-storage_attributes",
                )
            (count,) = struct.unpack_from(">Q", data, pos)
            pos += 8
            if count > len(data) - pos:
                raise VmstateError(
                    f"s390-storage_attributes run of {count} bytes runs past the section",
                    offset + pos,
                    device="s390-storage_attributes",
                )
            pos += count
            runs += 1
            pages += count
            gfn = (word - flags) // S390_PAGE_SIZE
            first_gfn = gfn if first_gfn is None else min(first_gfn, gfn)
        elif flags == STATTR_FLAG_ERROR:
            raise VmstateError(
                "Storage attributes data is incomplete (STATTR_FLAG_ERROR)",
                offset + pos - 8,
                device="s390-storage_attributes",
            )
        else:
            raise VmstateError(
                f"Unexpected storage attribute flag data: {flags:#x}",
                offset + pos - 8,
                device="s390-storage_attributes",
            )
    if pos != len(data):
        raise VmstateError(
            f"{len(data) - pos} bytes after the storage attributes EOS", offset + pos, device="s390-storage_attributes"
        )
    return {"runs": runs, "pages": pages, "done": done, "first_gfn": first_gfn}
