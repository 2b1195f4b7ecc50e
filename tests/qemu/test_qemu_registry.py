"""The bundled registry of what QEMU registers (decode/sections.py, used for streams
without a VMDESCRIPTION such as postcopy) must never refuse a real stream: paused VMs
with many devices on buses that name them (PCI behind a bridge, SCSI, USB, spapr-vio,
s390 channel subsystem, virtio-mmio), migrated by QEMU 7.2 and 10.0, their stream cut
after QEMU_VM_EOF, are valid with their names and versions checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migstream.decode.description import find_description
from support.qemu import Vm
from support.qemu import need
from support.qemu import qemu10_root
from support.qemu import qemu10_wrapper

NET = ("-netdev", "user,id=n0", "-netdev", "user,id=n1")


def _disk(tmp: Path) -> str:
    disk = tmp / "d.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    return f"file={disk},format=raw,if=none,snapshot=on"


def _x86(tmp: Path) -> tuple[str, ...]:
    return (
        "-m", "64M", "-smp", "2", *NET, "-audiodev", "none,id=a0",
        "-device", "virtio-net-pci,netdev=n0", "-device", "e1000e,netdev=n1",
        "-device", "virtio-scsi-pci,id=s0", "-drive", _disk(tmp) + ",id=d0", "-device", "scsi-hd,drive=d0,bus=s0.0",
        "-device", "usb-ehci,id=ehci", "-device", "usb-tablet,bus=ehci.0", "-device", "qemu-xhci", "-device", "usb-kbd",
        "-device", "intel-hda", "-device", "hda-duplex,audiodev=a0", "-device", "virtio-balloon-pci",
        "-device", "virtio-serial-pci", "-device", "virtio-rng-pci", "-device", "pvpanic", "-device", "vmgenid",
        "-device", "i6300esb", "-device", "pci-bridge,chassis_nr=1,id=br1",
        "-drive", _disk(tmp) + ",id=d1", "-device", "virtio-blk-pci,bus=br1,addr=1,drive=d1",
    )  # fmt: skip


def _aarch64(tmp: Path) -> tuple[str, ...]:
    return (
        "-cpu", "max", "-m", "64M", "-smp", "2", *NET,
        "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-net-device,netdev=n1",
        "-device", "virtio-scsi-pci,id=s0", "-drive", _disk(tmp) + ",id=d0", "-device", "scsi-hd,drive=d0,bus=s0.0",
        "-device", "qemu-xhci", "-device", "usb-kbd", "-device", "virtio-balloon-pci",
    )  # fmt: skip


def _ppc64(tmp: Path) -> tuple[str, ...]:
    return (
        "-m", "256M", *NET, "-device", "spapr-vlan,netdev=n0", "-device", "virtio-net-pci,netdev=n1",
        "-device", "spapr-vscsi,id=vs", "-drive", _disk(tmp) + ",id=d0", "-device", "scsi-hd,drive=d0,bus=vs.0",
        "-device", "qemu-xhci", "-device", "usb-kbd",
    )  # fmt: skip


def _s390x(tmp: Path) -> tuple[str, ...]:
    return (
        "-m", "64M", *NET, "-device", "virtio-net-ccw,netdev=n0",
        "-drive", _disk(tmp) + ",id=d0", "-device", "virtio-blk-ccw,drive=d0", "-device", "virtio-balloon-ccw",
    )  # fmt: skip


CASES = {
    "7.2-pc": ("qemu-system-x86_64", "pc-i440fx-7.2", _x86, "QEMU 7.2 x86_64"),
    "7.2-q35": ("qemu-system-x86_64", "pc-q35-7.2", _x86, "QEMU 7.2 x86_64"),
    "7.2-aarch64": ("qemu-system-aarch64", "virt-7.2", _aarch64, "QEMU 7.2 aarch64"),
    "7.2-ppc64": ("qemu-system-ppc64", "pseries-7.2", _ppc64, "QEMU 7.2 ppc64"),
    # A hot-plugged PCI device: its slot's DR connector is sent ("spapr_drc",
    # "spapr_drc/physical") and the device's path is the PHB's ("pci@800000020000000:00.0").
    "7.2-ppc64-hotplug": ("qemu-system-ppc64", "pseries-7.2", _ppc64, "QEMU 7.2 ppc64"),
    "7.2-s390x": ("qemu-system-s390x", "s390-ccw-virtio-7.2", _s390x, "QEMU 7.2 s390x"),
    "10.0-q35": ("qemu10", "pc-q35-10.0", _x86, "QEMU 10.0 x86_64"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_streams_without_a_description_are_valid(case, tmp_path):
    binary, machine, devices, registry = CASES[case]
    if binary == "qemu10":
        root = qemu10_root()
        if not (root / "usr/bin/qemu-system-x86_64").exists():
            pytest.fail(f"QEMU 10 not found under {root}: run tests/setup-debian.sh or samples/get_qemu10.sh")
        binary = qemu10_wrapper(root, tmp_path)
    else:
        binary = need(binary)
    out = tmp_path / "vm.mig"
    with Vm(binary, ["-M", machine, *devices(tmp_path), "-S"], tmp_path, "vm") as vm:
        if case.endswith("-hotplug"):
            vm.cmd("device_add", driver="virtio-rng-pci", id="hotplugged")
        vm.migrate_to_file(out)
    raw = out.read_bytes()
    found = find_description(raw[-(1 << 20) :], len(raw))
    assert found
    cut = tmp_path / "cut.mig"
    cut.write_bytes(raw[: found[0]])
    r = subprocess.run([sys.executable, "-m", "migstream", "validate", str(cut)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"ok: {found[0]} bytes (device instance ids and payload lengths not verified: no description; "
        f"names and versions checked against {registry})"
    )
