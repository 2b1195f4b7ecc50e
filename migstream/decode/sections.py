"""Which device sections the destination accepts: QEMU's loader checks on section
headers (migration/savevm.c ``qemu_loadvm_section_start_full``,
``qemu_loadvm_section_part_end``, ``check_section_footer``).

A destination of the same QEMU and machine registers (``find_se``) exactly the devices
the source described in its VMDESCRIPTION (name, instance id, version) plus the live
(iterative) handlers every QEMU registers: ``ram`` (migration/ram.c, version 4),
``block`` (migration/block.c) and ``dirty-bitmap`` (migration/block-dirty-bitmap.c),
version 1 each.  So with a description the loader's answer is known:

- START/FULL naming an (idstr, instance id) that is not registered: "Unknown savevm
  section or instance";
- a version id above the registered one: "savevm: unsupported version";
- PART/END naming a section id no START/FULL announced: "Unknown savevm section"
  (decoder.py); a PART/END of a non-iterative device section: the loader would read
  that device's vmstate from RAM records.

Without a description (postcopy) the names and version ranges a destination QEMU
registers come from a bundled registry (``DeviceNames``, ``device_names_for``:
migstream/data/vmstate-registry.json.zst, made by samples/vmstate_registry.py); the
instance ids of devices without a qdev path stay unknown, and the decoder says so
(``device_checks_missing``; ``validate`` prints it in its verdict).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from ..errors import StreamError
from ..wire import grammar as g
from ..wire.pagesize import page_size_for
from .description import device_key

ST = g.SectionType

#: idstr -> (instance id or None for any, version) of the live (iterative) handlers
#: QEMU registers with register_savevm_live: the only sections that come in parts.
LIVE_HANDLERS: dict[str, tuple[int | None, int]] = {
    "ram": (0, g.RAM_SECTION_VERSION),  # migration/ram.c
    g.BLOCK_SECTION: (0, 1),  # migration/block.c
    g.DIRTY_BITMAP_SECTION: (0, 1),  # migration/block-dirty-bitmap.c
    "spapr/htab": (None, 1),  # hw/ppc/spapr.c
    "s390-storage_attributes": (None, 0),  # hw/s390x/s390-stattrib.c
    "vfio": (None, 1),  # hw/vfio/migration.c
    g.PBS_STATE_SECTION: (0, 1),  # Proxmox VE's pve-qemu only: pbs-state.c (register_savevm_live)
}


#: Live handlers registered under their device's qdev path ("0000:00:05.0/vfio":
#: hw/vfio/migration.c names the section after the device).
PATHED_LIVE_HANDLERS = frozenset({"vfio"})


def live_version(idstr: str, instance_id: int) -> int | None:
    """The version of a live handler (idstr, instance id), or None if it is not one."""
    live = LIVE_HANDLERS.get(idstr)
    if live is None and "/" in idstr and idstr.rsplit("/", 1)[1] in PATHED_LIVE_HANDLERS:
        live = LIVE_HANDLERS[idstr.rsplit("/", 1)[1]]
    if live is None or (live[0] is not None and live[0] != instance_id):
        return None
    return live[1]


# What a registered idstr can look like (vmstate names, qdev paths, PCI addresses).
_IDSTR = re.compile(r"^[\x21-\x7e]+$")

#: VMSTATE_INSTANCE_ID_ANY as a stream's be32.
INSTANCE_ID_ANY = 0xFFFFFFFF
# Devices registered with a legacy alias id (qdev_set_legacy_instance_id: the ISA
# I/O base): their alias is not -1, so an instance id of -1 does not find them.
# Measured: -1 finds mc146818rtc in QEMU 11.1 (pc-i440fx-11.1), not in 7.2; the
# versions between were not tried, so the machine version >= 11 decides.
_ALIASED = frozenset({"i8254", "mc146818rtc", "serial", "fdc", "i8259"})
_ALIAS_DROPPED = {"mc146818rtc": (11, 0)}
# Devices whose field layout has not changed since an older version_id, so QEMU loads
# a section labelled with that older version from the same payload (vmstate_load_state
# skips only fields newer than the incoming version).  The description names fields but
# not the version each field came in, so this cannot be read from the stream.
#   ioapic: version_id 3, minimum 1, no field newer than v2 (hw/intc/ioapic_common.c;
#   7.2 and 11.1 load a v2-labelled ioapic section: docs/validate.md).
_SAME_LAYOUT_SINCE = {"ioapic": 2}


def aliased(idstr: str, machine: tuple[int, int] | None) -> bool:
    """Whether the devices named ``idstr`` have a legacy alias id on this machine
    version (so that VMSTATE_INSTANCE_ID_ANY does not find them)."""
    if idstr not in _ALIASED:
        return False
    dropped = _ALIAS_DROPPED.get(idstr)
    return dropped is None or machine is None or machine < dropped


def machine_version(machine: str | None) -> tuple[int, int] | None:
    """(major, minor) of a versioned machine type name, e.g. pc-i440fx-7.2 -> (7, 2)."""
    m = _VERSIONED.match(machine or "")
    return (int(m.group(2)), int(m.group(3))) if m else None


# Machine types whose name carries a version (hw/*: DEFINE_*_MACHINE): the stream
# has the resolved name, e.g. pc-i440fx-7.2, never the alias.
_VERSIONED = re.compile(r"^(pc-i440fx|pc-q35|pc|virt|pseries|s390-ccw-virtio|xenfv)-(\d+)\.(\d+)$")
_VERSIONED_PREFIX = re.compile(r"^(pc-i440fx|pc-q35|s390-ccw-virtio|(pc|virt|pseries|xenfv)-\d)")
_VERSION_SUFFIX = re.compile(r"-\d+\.\d+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,+-]*$")
_UNVERSIONED = frozenset(
    {"virt", "pseries", "microvm", "isapc", "xenfv", "xenpv", "x-remote", "none", "sun4u", "sun4v", "s390-ccw-virtio"}
)
# Targets whose page size is chosen at start-up (TARGET_PAGE_BITS_VARY): the
# loader assumes the minimum (10) when the stream does not say it.
_VARY_PAGE_ARCHES = frozenset({"aarch64", "arm"})
_VARY_MIN_BITS = 10


def machine_name_known(machine: str) -> bool:
    """Whether ``machine`` can be a QEMU machine type's name: a versioned name of a
    versioned family, or an unversioned name of plain characters (families migstream
    does not know pass; a versioned-looking name of another family does not)."""
    if not _NAME.match(machine):
        return False
    if _VERSIONED.match(machine) or machine in _UNVERSIONED:
        return True
    # A version suffix on no versioned family, or a versioned family's name cut or
    # extended (a wrong length): no QEMU has that machine.
    return not (_VERSION_SUFFIX.search(machine) or _VERSIONED_PREFIX.match(machine))


def check_machine(machine: str, target_page_bits: int | None, off: int) -> None:
    """The configuration's machine name and page bits (savevm.c configuration_post_load
    compares both with the destination's: "Machine type received is ... and local is
    ..."; "Received TARGET_PAGE_BITS is ... but local is ...").  The destination is
    the same machine, so the name must be one QEMU defines and the page bits those of
    its architecture."""
    if not machine_name_known(machine):
        raise StreamError(
            f"Machine type received is {machine!r}: no QEMU machine type has this name", off, section="configuration"
        )
    size, arch = page_size_for(machine)
    if size is None:
        return
    local = size.bit_length() - 1
    bits = target_page_bits
    if bits is None and arch in _VARY_PAGE_ARCHES:
        bits = _VARY_MIN_BITS
    if bits is not None and bits != local:
        raise StreamError(
            f"Received TARGET_PAGE_BITS is {bits} but local is {local} (a {arch} machine)", off, section="configuration"
        )


class SectionRegistry:
    """The destination's registered devices, as far as the stream tells them."""

    def __init__(self, description: dict[str, Any] | None) -> None:
        # (name, instance id) -> version (None: an old-style handler, its JSON has no version)
        self.devices: dict[tuple[str, int], int | None] | None = None
        #: (major, minor) of the stream's machine type, set once the configuration is read.
        self.machine_version: tuple[int, int] | None = None
        listed = description.get("devices") if isinstance(description, dict) else None
        if not isinstance(listed, list) or not listed:
            return
        devices: dict[tuple[str, int], int | None] = {}
        for dev in listed:
            name, iid = device_key(dev) if isinstance(dev, dict) else (None, None)
            if not isinstance(name, str) or type(iid) is not int:
                return  # not what QEMU writes: the description tells nothing sure
            version = dev.get("version")
            devices[(name, iid)] = version if type(version) is int else None
        self.devices = devices

    def _aliased(self, idstr: str) -> bool:
        return aliased(idstr, self.machine_version)

    @classmethod
    def from_json(cls, text: bytes) -> SectionRegistry | None:
        try:
            desc = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        reg = cls(desc if isinstance(desc, dict) else None)
        return reg if reg.known else None

    @property
    def known(self) -> bool:
        return self.devices is not None

    def registered(self, idstr: str, instance_id: int) -> tuple[int | None] | None:
        """(registered version or None if not known,) of (idstr, instance id), or None
        if the destination does not have it (or, without a description, it is not
        known to have it)."""
        live = live_version(idstr, instance_id)
        if live is not None:
            return (live,)
        if self.devices is None:
            return None
        if (idstr, instance_id) in self.devices:
            return (self.devices[(idstr, instance_id)],)
        if instance_id == INSTANCE_ID_ANY and not self._aliased(idstr):
            # find_se also matches a handler's alias id, -1 for those without one.
            for (name, _), version in self.devices.items():
                if name == idstr:
                    return (version,)
        return None

    def check_header(self, off: int, typ: int, idstr: str, instance_id: int, version_id: int) -> None:
        """START/FULL: the find_se lookup and the version check (only with a description,
        or for the live handlers' own names)."""
        found = self.registered(idstr, instance_id)
        if found is None:
            if self.devices is None and _IDSTR.match(idstr):
                return  # no description: any plausible name may be registered
            # (An empty name or one with bytes outside printable ASCII is no
            # device's, description or not.)
            raise StreamError(
                f"Unknown savevm section or instance '{idstr}' {instance_id}. Make sure that your "
                "current VM setup matches your saved VM setup, including any hotplugged devices",
                off,
                section=idstr,
            )
        version = found[0]
        if version is not None and version_id > version:
            raise StreamError(f"savevm: unsupported version {version_id} for '{idstr}' v{version}", off, section=idstr)
        if (
            version is not None
            and version_id < min(version, _SAME_LAYOUT_SINCE.get(idstr, version))
            and live_version(idstr, instance_id) is None
        ):
            # vmstate_load_state: below the device's minimum ("too old"), or the
            # fields of the older version, which the payload (written as vN) does not
            # hold ("Missing section footer").  A device whose older layout is the
            # same loads: the description cannot tell (docs/validate.md).
            raise StreamError(
                f"{idstr}: incoming version_id {version_id} is older than the described v{version} "
                "(too old for the device, or another field layout than the payload's)",
                off,
                section=idstr,
            )

    @staticmethod
    def check_part(off: int, section_id: int, idstr: str, instance_id: int) -> None:
        """PART/END: only the live handlers load in parts; another device's load
        function would parse RAM records as its vmstate."""
        if live_version(idstr, instance_id) is None:
            raise StreamError(
                f"section {section_id} ('{idstr}') continued by PART/END: it is not an iterative section, "
                f"QEMU would load '{idstr}' vmstate from what follows",
                off,
                section=idstr,
            )


# --- without a description: what a destination QEMU registers, by name --------------

#: Machine-type families -> the target whose devices the bundled registry lists.
_FAMILY_TARGET = {
    "pc-i440fx": "x86_64",
    "pc-q35": "x86_64",
    "pc": "x86_64",
    "virt": "aarch64",
    "pseries": "ppc64",
    "s390-ccw-virtio": "s390x",
}
# One component of a qdev path (qdev_get_dev_path, the bus's get_dev_path: PCI
# "0000:00:01.1" and "0000:00:0c.0:01.0" behind a bridge, SCSI "0:0:0", USB ports
# "1.2", spapr-vio "vty@71000000", virtio-mmio "virtio-mmio@000000000a000000", vmbus
# instance UUIDs): the loader's idstr is "PATH/vmsd-name" for a device on a bus that
# names its devices.  The s390 channel subsystem's path starts with "/" ("/fe.0.0000",
# hw/s390x/virtual-css-bus.c), an empty first component.
_PATH_PART = re.compile(r"^[0-9A-Za-z][0-9A-Za-z@.:,_+-]*$")
REGISTRY_FILE = "vmstate-registry.json.zst"
#: Counted instance ids (one per device) and legacy alias ids (I/O ports, MMIO bases
#: of the bundled machines' devices) stay below this.
COUNTED_LIMIT = 1 << 31


@functools.cache
def bundled_registries() -> dict[str, dict[str, dict[str, Any]]]:
    """QEMU version -> target -> {"machines": [...], "vmsd": {name: [min, max]}}, as
    recorded by samples/vmstate_registry.py (QEMU's -dump-vmstate plus the
    VMDESCRIPTION of a paused VM of each machine)."""
    import importlib.resources  # (only for a stream without a description: start-up stays light)

    import zstandard

    data = (importlib.resources.files("migstream") / "data" / REGISTRY_FILE).read_bytes()
    table = json.loads(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 24))
    return table["qemu"]


def _qemu_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class DeviceNames:
    """The vmsd names (with min and max version_id) a destination registers: what the
    loader's find_se and version checks need, except the instance ids."""

    def __init__(
        self, label: str, vmsd: dict[str, tuple[int | None, int | None]], counted: frozenset[str] = frozenset()
    ) -> None:
        self.label = label
        self.vmsd = vmsd
        #: Names registered only as device classes' vmsds (qdev: VMSTATE_INSTANCE_ID_ANY),
        #: whose instance ids are counted per name (savevm.c calculate_new_instance_id).
        self.counted = counted

    @classmethod
    def from_dump(cls, label: str, dump: dict[str, Any]) -> DeviceNames:
        """From QEMU's ``-dump-vmstate FILE`` JSON (device class -> its vmsd)."""
        vmsd: dict[str, tuple[int | None, int | None]] = {}
        for entry in dump.values():
            desc = entry.get("Description") if isinstance(entry, dict) else None
            if isinstance(desc, dict) and isinstance(desc.get("name"), str):
                lo, hi = desc.get("minimum_version_id"), desc.get("version_id")
                _widen(vmsd, desc["name"], lo if type(lo) is int else None, hi if type(hi) is int else None)
        return cls(label, vmsd, frozenset(vmsd))

    def merged(self, other: DeviceNames) -> DeviceNames:
        """Both registries' names (a name in both: the wider version range)."""
        vmsd = dict(self.vmsd)
        for name, (lo, hi) in other.vmsd.items():
            _widen(vmsd, name, lo, hi)
        # Counted where no registry registers the name otherwise.
        counted = (self.counted - (other.vmsd.keys() - other.counted)) | (
            other.counted - (self.vmsd.keys() - self.counted)
        )
        return DeviceNames(f"{self.label} and {other.label}", vmsd, frozenset(counted))

    def lookup(self, idstr: str) -> tuple[tuple[int | None, int | None], bool] | None:
        """((min, max), at a qdev path) of the device ``idstr`` names, or None."""
        entry = self.vmsd.get(idstr)
        if entry is not None:
            return entry, False
        for i, ch in enumerate(idstr):
            if ch == "/" and idstr[i + 1 :] in self.vmsd:
                parts = idstr[:i].split("/")
                if parts[0] == "" and len(parts) > 1:
                    parts = parts[1:]  # "/fe.0.0000/virtio-net"
                if all(_PATH_PART.match(part) for part in parts):
                    return self.vmsd[idstr[i + 1 :]], True
        return None

    def check(
        self, off: int, idstr: str, instance_id: int, version_id: int, machine: tuple[int, int] | None = None
    ) -> None:
        """START/FULL header of a device section (not a live handler's) of a stream
        whose machine type has version ``machine``."""
        found = self.lookup(idstr)
        unknown = (
            f"Unknown savevm section or instance '{idstr}' {instance_id}. Make sure that your current VM setup "
            "matches your saved VM setup, including any hotplugged devices"
        )
        if found is None:
            raise StreamError(f"{unknown} ({self.label} registers no device of this name)", off, section=idstr)
        (lo, hi), at_path = found
        if at_path and instance_id not in (0, INSTANCE_ID_ANY):
            # savevm.c vmstate_register_with_alias_id: a device at a qdev path gets
            # a fresh instance id for its full name, 0 (QEMU asserts it).
            raise StreamError(f"{unknown} (a device at a qdev path has instance 0)", off, section=idstr)
        if instance_id == INSTANCE_ID_ANY and not at_path and aliased(idstr, machine):
            raise StreamError(f"{unknown} (its devices have a legacy alias id: -1 finds none)", off, section=idstr)
        if not at_path and idstr in self.counted and COUNTED_LIMIT <= instance_id != INSTANCE_ID_ANY:
            # A device class's vmsd: qdev registers it with a counted instance id
            # (one per device of that name) and, for legacy ISA devices, an alias id
            # that is their I/O port (hw/core/qdev.c, qdev_set_legacy_instance_id).
            raise StreamError(
                f"{unknown} (a device of this class is registered with a counted instance id or its I/O port)",
                off,
                section=idstr,
            )
        if hi is not None and version_id > hi:
            raise StreamError(
                f"savevm: unsupported version {version_id} for '{idstr}' v{hi} ({self.label})", off, section=idstr
            )
        if lo is not None and version_id < lo:
            # vmstate.c vmstate_load_state
            raise StreamError(
                f"{idstr}: incoming version_id {version_id} is too old for local minimum version_id {lo} "
                f"({self.label})",
                off,
                section=idstr,
            )


def _widen(vmsd: dict[str, tuple[int | None, int | None]], name: str, lo: int | None, hi: int | None) -> None:
    """Add ``name`` with [lo, hi] to ``vmsd``; a name already there gets the wider
    range (an unknown bound stays unknown: no check on that side)."""
    old = vmsd.get(name)
    if old is not None:
        lo = None if lo is None or old[0] is None else min(lo, old[0])
        hi = None if hi is None or old[1] is None else max(hi, old[1])
    vmsd[name] = (lo, hi)


def machine_target(machine: str | None) -> str | None:
    """The target (x86_64, aarch64, ...) of a versioned machine type's family."""
    m = _VERSIONED.match(machine or "")
    return _FAMILY_TARGET.get(m.group(1)) if m else None


def device_names_for(machine: str | None, qemu_version: str | None = None) -> DeviceNames | None:
    """The bundled registry for a destination of ``machine``: QEMU ``qemu_version``'s,
    or by default the QEMU the machine type is named after (pc-i440fx-7.2: 7.2).
    A machine version with no bundled QEMU of its own gets the union of the bundled
    QEMUs that have the machine type (newer ones: any of them may be the destination,
    so a name or version any of them loads passes).  None: no registry applies (an
    unversioned machine, a family or a QEMU not bundled)."""
    target = machine_target(machine)
    version = machine_version(machine)
    if target is None or version is None:
        return None
    table = bundled_registries()
    if qemu_version is not None:
        return _registry(qemu_version, target) if target in table.get(qemu_version, {}) else None
    exact = f"{version[0]}.{version[1]}"
    if target in table.get(exact, {}):
        return _registry(exact, target)
    newer = sorted((v for v in table if target in table[v] and _qemu_key(v) >= version), key=_qemu_key)
    if not newer:
        return None
    merged = _registry(newer[0], target)
    for v in newer[1:]:
        merged = merged.merged(_registry(v, target))
    return DeviceNames(f"QEMU {' or '.join(newer)} {target}", merged.vmsd, merged.counted)


def _registry(qemu_version: str, target: str) -> DeviceNames:
    entry = bundled_registries()[qemu_version][target]
    vmsd = {k: (v[0], v[1]) for k, v in entry["vmsd"].items()}
    return DeviceNames(f"QEMU {qemu_version} {target}", vmsd, frozenset(entry.get("counted", ())))


def bundled_qemu_versions() -> list[str]:
    return sorted(bundled_registries(), key=_qemu_key)
