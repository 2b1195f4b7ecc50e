"""Device-section headers of a stream without a VMDESCRIPTION (postcopy): judged by
the bundled registry of what QEMU registers (decode/sections.py DeviceNames,
migstream/data/vmstate-registry.json.zst from samples/vmstate_registry.py), or by
the destination's devices given with ``validate --description``."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import pytest

from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.decode.decoder import StreamDecoder
from migstream.decode.sections import bundled_qemu_versions
from migstream.decode.sections import device_names_for
from migstream.decode.sections import live_version
from migstream.events import Configuration
from migstream.events import SectionStart
from support.oracle import read_sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh():
    """x86-fresh-S (QEMU 7.2, pc) and the same bytes cut at QEMU_VM_EOF: a stream
    without a description, as postcopy sends them."""
    raw = read_sample("x86-fresh-S.mig.zst")
    dec = StreamDecoder()
    dec.feed(raw)
    dec.feed(b"")
    starts = {ev.idstr: ev for ev in dec if type(ev) is SectionStart}
    eof = raw.rindex(b"\x00\x06\x00")
    return raw, raw[: eof + 1], starts


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *args], capture_output=True, text=True)


def _field(ev, field: str) -> int:
    n = len(ev.idstr)
    return {"idstr": ev.offset + 6, "instance": ev.offset + 6 + n, "version": ev.offset + 10 + n}[field]


def _patched(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def test_every_section_of_every_real_capture_is_in_its_registry():
    """The registry must never refuse a real stream: every START/FULL header of the
    bundled captures (QEMU 7.2, 10.0, 11.1; x86 pc and q35, aarch64, ppc64, s390x;
    libvirt images) passes the default registry and every QEMU's of its target."""
    files = sorted(glob.glob(str(ROOT / "samples" / "*.mig.zst"))) + [str(ROOT / "samples" / "libvirt-zstd.img")]
    checked = 0
    for path in files:
        with StreamSource(path) as src:
            dec = open_decoder(src)
            events = list(iter_events(src, dec))
        machine = next(ev.machine for ev in events if type(ev) is Configuration)
        registries = [device_names_for(machine)] + [device_names_for(machine, v) for v in bundled_qemu_versions()]
        assert registries[0] is not None, f"{path}: no registry for {machine}"
        for ev in events:
            if type(ev) is SectionStart and ev.type in (1, 4) and live_version(ev.idstr, ev.instance_id) is None:
                for names in filter(None, registries):
                    names.check(ev.offset, ev.idstr, ev.instance_id, ev.version_id)
                    checked += 1
    assert checked > 1000


def test_without_a_description_names_and_versions_are_checked(fresh, tmp_path):
    raw, cut, sec = fresh
    path = tmp_path / "nodesc.mig"
    path.write_bytes(cut)
    r = _cli("validate", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"ok: {len(cut)} bytes (device instance ids and payload lengths not verified: no description; "
        "names and versions checked against QEMU 7.2 x86_64)"
    )
    # A name QEMU 7.2 registers for no device (the oracle's 'gloaalstate').
    ev = sec["globalstate"]
    path.write_bytes(_patched(cut, _field(ev, "idstr") + 3, b"a"))
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert (
        f"error at offset 0x{ev.offset:x}, section gloaalstate: Unknown savevm section or instance 'gloaalstate' 0."
        in r.stderr
    )
    assert "(QEMU 7.2 x86_64 registers no device of this name)" in r.stderr
    # A version above QEMU 7.2's (mc146818rtc is v3).
    ev = sec["mc146818rtc"]
    path.write_bytes(_patched(cut, _field(ev, "version"), (4).to_bytes(4, "big")))
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert "savevm: unsupported version 4 for 'mc146818rtc' v3 (QEMU 7.2 x86_64)" in r.stderr
    # A device at a qdev path is registered with instance 0 (savevm.c asserts it).
    ev = sec["0000:00:01.3/piix4_pm"]
    path.write_bytes(_patched(cut, _field(ev, "instance"), (1).to_bytes(4, "big")))
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert "'0000:00:01.3/piix4_pm' 1. Make sure" in r.stderr and "(a device at a qdev path has instance 0)" in r.stderr
    # A device class's vmsd has a counted instance id (or an I/O port alias): dma
    # 0x80000001 (the oracle's) is no device's, though dma 1 is (two DMA controllers).
    ev = [e for e in sec.values() if e.idstr == "dma"][0]
    path.write_bytes(_patched(cut, _field(ev, "instance"), (0x80000001).to_bytes(4, "big")))
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert "'dma' 2147483649. Make sure" in r.stderr and "counted instance id or its I/O port" in r.stderr
    # A qdev path QEMU never forms (the oracle's '000/:00:01.0/PIIX3').
    ev = sec["0000:00:01.0/PIIX3"]
    path.write_bytes(_patched(cut, _field(ev, "idstr") + 3, b"/"))
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert "Unknown savevm section or instance '000/:00:01.0/PIIX3' 0" in r.stderr


def test_instance_ids_need_the_destinations_devices(fresh, tmp_path):
    """hpet 1 instead of 0: QEMU 7.2 refuses it (the pc machine has one HPET), but a
    registry of names cannot know how many HPETs the destination has.  Another
    capture of the same VM (its VMDESCRIPTION) can: --description."""
    raw, cut, sec = fresh
    ev = sec["hpet"]
    path = tmp_path / "nodesc.mig"
    path.write_bytes(_patched(cut, _field(ev, "instance"), (1).to_bytes(4, "big")))
    r = _cli("validate", str(path))
    assert r.returncode == 0, r.stderr
    assert "device instance ids and payload lengths not verified" in r.stdout
    full = tmp_path / "same-vm.mig"
    full.write_bytes(raw)
    r = _cli("validate", "--description", str(full), str(path))
    assert r.returncode == 1
    assert f"error at offset 0x{ev.offset:x}, section hpet: Unknown savevm section or instance 'hpet' 1" in r.stderr
    # The unchanged stream is valid against the same description.
    path.write_bytes(cut)
    r = _cli("validate", "--description", str(full), str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ok: {len(cut)} bytes (device payload lengths not verified: no description)"


def test_qemu_version_chooses_the_registry(fresh, tmp_path):
    raw, cut, sec = fresh
    path = tmp_path / "nodesc.mig"
    path.write_bytes(cut)
    r = _cli("validate", "--qemu-version", "11.1", str(path))
    assert r.returncode == 0, r.stderr
    assert "names and versions checked against QEMU 11.1 x86_64" in r.stdout
    r = _cli("validate", "--qemu-version", "9.9", str(path))
    assert r.returncode == 1
    assert "--qemu-version 9.9: no bundled registry (have 7.2, 10.0, 11.1)" in r.stderr


def test_dump_vmstate_json_as_description(fresh, tmp_path):
    """QEMU's own -dump-vmstate (device classes) adds to the bundled registry."""
    raw, cut, sec = fresh
    dump = tmp_path / "dump.json"
    dump.write_text(
        '{"x": {"Name": "x", "version_id": 9, "minimum_version_id": 1,'
        ' "Description": {"name": "mc146818rtc", "version_id": 9, "minimum_version_id": 1}}}'
    )
    ev = sec["mc146818rtc"]
    path = tmp_path / "nodesc.mig"
    path.write_bytes(_patched(cut, _field(ev, "version"), (4).to_bytes(4, "big")))
    r = _cli("validate", "--description", str(dump), str(path))
    assert r.returncode == 0, r.stderr
    assert f"QEMU 7.2 x86_64 and -dump-vmstate {dump}" in r.stdout


def test_machine_types_and_their_registry():
    assert device_names_for("pc-i440fx-7.2").label == "QEMU 7.2 x86_64"
    assert device_names_for("pc-q35-8.2").label == "QEMU 10.0 or 11.1 x86_64"
    assert device_names_for("virt-9.0").label == "QEMU 11.1 aarch64"
    assert device_names_for("pc-i440fx-99.0") is None
    assert device_names_for("virt") is None  # riscv64's unversioned virt: which QEMU is unknown
    assert device_names_for("pc-i440fx-7.2", "11.1").label == "QEMU 11.1 x86_64"


def test_vfio_at_a_qdev_path_is_a_live_handler():
    """hw/vfio/migration.c registers "PATH/vfio" with register_savevm_live: an
    iterative section of any device's path, in no registry of device names."""
    assert live_version("0000:00:05.0/vfio", 0) == 1
    assert live_version("vfio", 3) == 1
    assert live_version("0000:00:05.0/vfiox", 0) is None
