"""Mapped-ram files from `migstream encode/transcode --mapped-ram`, loaded by real
QEMU 10.0 (`-incoming defer`, capability mapped-ram, `migrate-incoming file:PATH`).

QEMU 10 is the one samples/get_qemu10.sh unpacks (default /var/tmp/qemu10, or
$MIGSTREAM_QEMU10); tests/setup-debian.sh (README's test command, .ci/run) fetches
it.  Without it these tests fail: a skip would hide that mapped-ram output is not
checked against QEMU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.images import mixed_image
from support.qemu import X86_EXCLUDE
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import differing_pages
from support.qemu import qemu10_root
from support.qemu import qemu10_wrapper
from support.samples import SAMPLES
from support.samples import read_zst
from support.samples import sample_by_name

QEMU10 = qemu10_root()
GUEST = SAMPLES / "guest" / "guest.img"
MACHINE = "pc-i440fx-10.0"


def ms(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def qemu10(tmp_path_factory) -> str:
    """A wrapper that starts QEMU 10 like any binary (modules and firmware paths)."""
    binary = QEMU10 / "usr/bin/qemu-system-x86_64"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"QEMU 10 not found at {binary}: run tests/setup-debian.sh or samples/get_qemu10.sh")
    return qemu10_wrapper(QEMU10, tmp_path_factory.mktemp("qemu10"))


def encode_mapped_ram(image: Path, out: Path) -> None:
    """`migstream encode` of a pc.ram image into a mapped-ram file for QEMU 10's pc."""
    r = ms("encode", image, "--block", "pc.ram", "--machine", MACHINE, "--mapped-ram", "-o", out)
    assert r.returncode == 0, r.stderr


def destination(qemu10: str, tmp_path: Path, tag: str, *, guest: bool = False) -> Vm:
    args = ["-M", MACHINE, "-m", "32M", "-S", "-incoming", "defer"]
    if guest:
        args += ["-drive", f"file={GUEST},format=raw,if=ide,snapshot=on"]
    return Vm(qemu10, args, tmp_path, tag)


def load_file(vm: Vm, path: Path, *, mapped_ram: bool = True) -> None:
    """migrate-incoming file:PATH (with the mapped-ram capability unless told not to)."""
    vm.load_stream(path, caps=("mapped-ram",) if mapped_ram else (), uri=f"file:{path}")


def test_encoded_image_loads(qemu10, tmp_path):
    """An image (60 % zero pages) written as a mapped-ram file: QEMU 10 loads it and
    its guest memory equals the image."""
    img = mixed_image(32 * MiB, seed=21, zero=0.6)
    (tmp_path / "ram.img").write_bytes(img)
    encode_mapped_ram(tmp_path / "ram.img", tmp_path / "s.mig")
    st = os.stat(tmp_path / "s.mig")
    assert st.st_blocks * 512 < st.st_size * 0.6  # sparse: zero pages are holes
    with destination(qemu10, tmp_path, "enc") as vm:
        load_file(vm, tmp_path / "s.mig")
        assert vm.cmd("query-status")["status"] == "paused"
        mem = vm.pmemsave(0, len(img), tmp_path / "enc.dump")
    assert differing_pages(mem, bytes(img), X86_EXCLUDE) == []


def test_destination_without_the_capability_refuses(qemu10, tmp_path):
    """The configuration's capabilities subsection is what QEMU checks: a destination
    without mapped-ram refuses our file (so the loads above really were mapped-ram)."""
    (tmp_path / "ram.img").write_bytes(bytes(MiB) * 32)
    encode_mapped_ram(tmp_path / "ram.img", tmp_path / "s.mig")
    with destination(qemu10, tmp_path, "nocap") as vm:
        with pytest.raises(AssertionError) as exc:
            load_file(vm, tmp_path / "s.mig", mapped_ram=False)
    assert "Capability mapped-ram is off, but received capability is on" in str(exc.value), exc.value


def test_transcoded_running_capture_resumes(qemu10, tmp_path):
    """QEMU 10's plain capture of a running guest, transcoded to mapped-ram: QEMU 10
    loads it with the capture's own device state, memory equals what the capture
    carried, and after `cont` the guest keeps printing ticks (resumed, not rebooted)."""
    s = sample_by_name("q10-running")
    stream = tmp_path / "q10-running.mig"
    stream.write_bytes(read_zst(SAMPLES / s["stream"]))
    r = ms("extract", stream, "-o", tmp_path / "orig")
    assert r.returncode == 0, r.stderr
    r = ms("transcode", stream, "--mapped-ram", "-o", tmp_path / "mr.mig")
    assert r.returncode == 0, r.stderr
    with destination(qemu10, tmp_path, "tc", guest=True) as vm:
        load_file(vm, tmp_path / "mr.mig")
        mem = vm.pmemsave(0, 32 * MiB, tmp_path / "tc.dump")
        assert differing_pages(mem, (tmp_path / "orig" / "pc.ram.bin").read_bytes(), X86_EXCLUDE) == []
        text = vm.resume()
        assert vm.status() == "running"
    assert "migstream guest tick" in text, text
    assert "ready" not in text  # resumed, not rebooted


def test_mapped_ram_capture_transcoded_to_plain_loads_without_the_capability(qemu10, tmp_path):
    """The other direction: QEMU 10's mapped-ram capture re-emitted as a plain stream
    must not announce mapped-ram (its template configuration is re-built without it),
    and QEMU 10 loads it with exec: and no capability."""
    s = sample_by_name("q10-mapped-ram")
    stream = tmp_path / "mr.mig"
    stream.write_bytes(read_zst(SAMPLES / s["stream"]))
    r = ms("transcode", stream, "--plain", "-o", tmp_path / "plain.mig")
    assert r.returncode == 0, r.stderr
    info = ms("info", tmp_path / "plain.mig", "--json")
    assert info.returncode == 0 and "mapped-ram" not in info.stdout, info.stdout
    truth = read_zst(SAMPLES / "x86-image.ram.zst")
    with destination(qemu10, tmp_path, "plain") as vm:
        vm.load_stream(tmp_path / "plain.mig")
        mem = vm.pmemsave(0, 32 * MiB, tmp_path / "plain.dump")
    assert differing_pages(mem, truth, X86_EXCLUDE) == []
