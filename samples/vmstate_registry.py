#!/usr/bin/env python3
"""Record which device sections a destination QEMU can load, per QEMU version and
target, into migstream/data/vmstate-registry.json.zst (used by decode/sections.py
when a stream carries no VMDESCRIPTION, e.g. postcopy).

For each QEMU binary and machine:
- ``-dump-vmstate FILE``: every device class's vmsd (name, version_id,
  minimum_version_id), machine-independent;
- a paused (-S) VM of the machine migrated to a file: its VMDESCRIPTION lists what is
  registered outside qdev classes (timer, cpu_common, PCIBUS, i2c_bus, spapr, ...)
  with the version it sends, and the qdev path prefixes seen.

Rerun (QEMU 7.2 installed, QEMU 10.0 unpacked by samples/get_qemu10.sh, QEMU 11.1 via
the /work/qemu11/bin wrappers; a QEMU that is missing is left out):

    .venv/bin/python samples/vmstate_registry.py

Entries: {"qemu": {"7.2": {"x86_64": {"machines": [...], "vmsd": {name: [min, max]}}}}};
a name seen only in a VMDESCRIPTION has min null (its minimum is not known).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.qemu import Vm  # noqa: E402
from support.qemu import qemu10_root  # noqa: E402
from support.qemu import qemu10_wrapper  # noqa: E402

OUT = ROOT / "migstream" / "data" / "vmstate-registry.json.zst"
QEMU11 = "/work/qemu11/bin"

# User networking registers "slirp" (net/slirp.c register_savevm_live, no device).
SLIRP = ("-netdev", "user,id=n0")
X86_EXTRA = (*SLIRP, "-device", "e1000,netdev=n0", "-usb", "-device", "usb-tablet")
# (target, machine options of a small paused VM)
MACHINES = {
    "x86_64": [("pc", ("-M", "pc", "-m", "32M", *X86_EXTRA)), ("q35", ("-M", "q35", "-m", "32M", *X86_EXTRA))],
    "aarch64": [("virt", ("-M", "virt", "-cpu", "max", "-m", "64M", *SLIRP))],
    "ppc64": [("pseries", ("-M", "pseries", "-m", "256M", *SLIRP))],
    "s390x": [("s390-ccw-virtio", ("-M", "s390-ccw-virtio", "-m", "64M", *SLIRP))],
    "riscv64": [("virt", ("-M", "virt", "-m", "64M", *SLIRP))],
}
# Devices hot-plugged into the paused VM before it migrates: what only a hot-plug
# registers or makes sent (pseries: a PCI slot's DR connector, "spapr_drc" and
# "spapr_drc/physical", hw/ppc/spapr_drc.c, sent once its state changed).
HOTPLUG = {"pseries": [{"driver": "virtio-rng-pci", "id": "hotplugged"}]}
# Registered without a device by a backend the captures above do not start (its
# QEMU source; [minimum, version]): a TPM with swtpm.
BACKENDS = {
    "tpm-emulator": [0, 0],  # backends/tpm/tpm_emulator.c vmstate_tpm_emulator, version_id 0
}


def binaries(workdir: Path) -> list[tuple[str, str, str]]:
    """(QEMU version, target, binary) of the QEMUs present."""
    out = []
    for target in MACHINES:
        b = f"/usr/bin/qemu-system-{target}"
        if os.path.exists(b):
            out.append(("7.2", target, b))
    root = qemu10_root()
    if (root / "usr/bin/qemu-system-x86_64").exists():
        out.append(("10.0", "x86_64", qemu10_wrapper(root, workdir)))
    for target in ("x86_64", "aarch64"):
        b = f"{QEMU11}/qemu-system-{target}"
        if os.path.exists(b):
            out.append(("11.1", target, b))
    return out


def add(vmsd: dict, name: str, lo: int | None, hi: int) -> None:
    if name in vmsd:
        olo, ohi = vmsd[name]
        lo = lo if olo is None else olo if lo is None else min(lo, olo)
        hi = max(hi, ohi)
    vmsd[name] = [lo, hi]


def dump_names(binary: str, workdir: Path, vmsd: dict) -> None:
    path = workdir / "dump.json"
    subprocess.run([binary, "-M", "none", "-dump-vmstate", str(path)], check=True, timeout=60, capture_output=True)
    for entry in json.loads(path.read_text()).values():
        desc = entry.get("Description") if isinstance(entry, dict) else None
        if desc:
            add(vmsd, desc["name"], desc.get("minimum_version_id", 0), desc.get("version_id", 0))


def probe_minimum(binary: str, args: tuple[str, ...], workdir: Path, capture: Path, vmsd: dict) -> None:
    """The minimum_version_id of what -dump-vmstate does not list: the capture with
    that section's version set to 0, loaded into a destination of the same machine;
    QEMU names the minimum ("incoming version_id 0 is too old for local minimum
    version_id N"), or loads on (minimum 0)."""
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import SectionStart
    from support.oracle import Target
    from support.oracle import qemu_verdict

    raw = capture.read_bytes()
    dec = StreamDecoder()
    dec.feed(raw)
    dec.feed(b"")
    first: dict[str, SectionStart] = {}
    for ev in dec:
        if type(ev) is not SectionStart or ev.type not in (1, 4):
            continue
        name = ev.idstr if ev.idstr in vmsd else ev.idstr.rsplit("/", 1)[-1]
        if name in vmsd and vmsd[name][0] is None:
            first.setdefault(name, ev)  # (a device at a qdev path: by its vmsd name)
    target = Target("probe", "", binary, args)
    for name, ev in first.items():
        at = ev.offset + 6 + len(ev.idstr.encode("latin-1")) + 4
        if int.from_bytes(raw[at : at + 4], "big") == 0:
            vmsd[name][0] = 0
            continue
        path = workdir / "probe.mig"
        path.write_bytes(raw[:at] + bytes(4) + raw[at + 4 :])
        verdict, error = qemu_verdict(target, path, workdir, "probe")
        m = re.search(r"incoming version_id 0 is too old for local minimum version_id\s+(\d+)", error)
        if m:
            vmsd[name][0] = int(m.group(1))
        elif verdict == "accept" or f"Missing section footer for {ev.idstr}" in error:
            vmsd[name][0] = 0  # the loader read it as version 0 (loaded, or failed further on)
        # else: not known (the minimum stays null: no "too old" check)
        print(f"   minimum {name}: {vmsd[name][0]} ({verdict}: {error[:90]})", file=sys.stderr)


def described(binary: str, args: tuple[str, ...], workdir: Path, vmsd: dict, hotplug=(), counted=None) -> str:
    from migstream.decode.description import load_description

    out = workdir / "desc.mig"
    with Vm(binary, [*args, "-S"], workdir, "desc") as vm:
        for device in hotplug:
            vm.cmd("device_add", **device)
        vm.migrate_to_file(out)
        version = vm.version()
    with open(out, "rb") as f:
        found = load_description(f, out.stat().st_size)
    assert found, f"{binary} {args}: no VMDESCRIPTION"
    for dev in found[1]["devices"]:
        name = dev["name"]
        ver = dev.get("version")
        if counted is not None and dev.get("vmsd_name", name) in counted and dev.get("instance_id", 0) >= 1 << 31:
            counted.discard(dev["vmsd_name"])  # registered with an explicit id too: not counted
        if "vmsd_name" in dev:  # QEMU 7.2+: the vmsd name of a qdev-path idstr
            name = dev["vmsd_name"]
        if type(ver) is int:
            add(vmsd, name, None, ver)
        elif name not in vmsd:
            vmsd[name] = [None, None]
    probe_minimum(binary, args, workdir, out, vmsd)
    out.unlink()
    return version


def main() -> None:
    import zstandard

    workdir = Path(tempfile.mkdtemp(prefix="vmstate-registry-", dir="/var/tmp"))
    table: dict = {}
    for qemu, target, binary in binaries(workdir):
        vmsd: dict = {}
        dump_names(binary, workdir, vmsd)
        n_dump = len(vmsd)
        # Device classes' vmsds: qdev registers them with VMSTATE_INSTANCE_ID_ANY,
        # so their instance ids are counted (savevm.c calculate_new_instance_id).
        counted = set(vmsd)
        machines = []
        for machine, args in MACHINES[target]:
            version = described(binary, args, workdir, vmsd, HOTPLUG.get(machine, ()), counted)
            machines.append(machine)
        if target in ("x86_64", "aarch64", "ppc64"):  # the targets with a TPM device
            for name, entry in BACKENDS.items():
                vmsd.setdefault(name, entry)
        table.setdefault(qemu, {})[target] = {
            "machines": machines,
            "vmsd": dict(sorted(vmsd.items())),
            "counted": sorted(counted),
        }
        print(
            f"{qemu} {target} ({version.strip()}): {n_dump} vmsd from -dump-vmstate, {len(vmsd)} in all",
            file=sys.stderr,
        )
    data = json.dumps({"qemu": table}, sort_keys=True, separators=(",", ":")).encode()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    print(f"{OUT}: {OUT.stat().st_size} bytes ({len(data)} uncompressed)", file=sys.stderr)


if __name__ == "__main__":
    main()
