"""`rewrite` and `transcode` against real QEMU 7.2: the re-emitted stream loads,
guest memory equals what the input delivered (plus patches), and the guest
resumes and acts on patched memory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.qemu import QEMU_X86
from support.qemu import X86_EXCLUDE
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import differing_pages
from support.qemu import need
from support.samples import SAMPLES
from support.samples import read_zst
from support.samples import sample_by_name

GUEST = SAMPLES / "guest" / "guest.img"


def ms(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)
    return r


def sample_files(tmp_path: Path, name: str) -> tuple[Path, list[Path]]:
    s = sample_by_name(name)
    stream = tmp_path / f"{name}.mig"
    stream.write_bytes(read_zst(SAMPLES / s["stream"]))
    channels = []
    for i, ch in enumerate(s.get("channels") or []):
        p = tmp_path / f"{name}.ch{i}"
        p.write_bytes(read_zst(SAMPLES / (ch["file"] if isinstance(ch, dict) else ch)))
        channels.append(p)
    return stream, channels


def destination(tmp_path: Path, tag: str) -> Vm:
    need(QEMU_X86)
    return Vm(
        QEMU_X86,
        ["-M", "pc", "-m", "32M", "-S", "-incoming", "defer", "-drive", f"file={GUEST},format=raw,if=ide,snapshot=on"],
        tmp_path,
        tag,
    )


def wait_for(vm: Vm, needle: str, timeout: float = 40) -> str:
    deadline = time.time() + timeout
    while needle not in vm.serial_text() and time.time() < deadline:
        time.sleep(0.2)
    return vm.serial_text()


def test_rewrite_patch_is_acted_on_by_the_resumed_guest(tmp_path):
    """Patch the guest's tick message in pc.ram; after `cont` the guest prints the
    patched text: the rewritten stream carried the patch and the device state."""
    stream, _ = sample_files(tmp_path, "x86-running")
    r = ms("extract", stream, "-o", tmp_path / "orig")
    assert r.returncode == 0, r.stderr
    ram = (tmp_path / "orig" / "pc.ram.bin").read_bytes()
    at = ram.find(b"migstream guest tick ")
    assert at > 0 and ram.find(b"migstream guest tick ", at + 1) < 0
    patch = tmp_path / "patch.bin"
    patch.write_bytes(b"PATCHED!!")
    r = ms("rewrite", stream, "-o", tmp_path / "patched.mig", "--patch", f"pc.ram:{at:#x}={patch}")
    assert r.returncode == 0, r.stderr
    expected = ram[:at] + b"PATCHED!!" + ram[at + 9 :]
    with destination(tmp_path, "rw") as vm:
        vm.load_stream(tmp_path / "patched.mig")
        mem = vm.pmemsave(0, 32 * MiB, tmp_path / "rw.dump")
        assert differing_pages(mem, expected, X86_EXCLUDE) == []
        vm.cmd("cont")
        text = wait_for(vm, "PATCHED!! guest tick")
        assert vm.cmd("query-status")["status"] == "running"
    assert "PATCHED!! guest tick" in text, text
    assert "ready" not in text  # resumed, not rebooted


@pytest.mark.parametrize(
    "name, options, caps",
    [
        ("x86-xbzrle", ["--plain"], ()),
        ("x86-compress", ["--xbzrle-cache", "8M"], ()),
        ("x86-multifd-nocomp", ["--compress-threads", "2"], ("compress",)),
        ("x86-postcopy", [], ()),
    ],
)
def test_transcode_loads_with_the_same_memory(tmp_path, name, options, caps):
    stream, channels = sample_files(tmp_path, name)
    chan_args = [a for c in channels for a in ("--channel", c)]
    r = ms("extract", stream, *chan_args, "-o", tmp_path / "orig")
    assert r.returncode == 0, r.stderr
    r = ms("transcode", stream, *chan_args, "-o", tmp_path / "out.mig", "--json", *options)
    assert r.returncode == 0, r.stderr
    info = ms("info", tmp_path / "out.mig", "--json")
    assert info.returncode == 0, info.stderr
    if "--xbzrle-cache" in options:
        assert '"xbzrle"' in info.stdout
    if "--compress-threads" in options:
        assert '"compressed"' in info.stdout
    with destination(tmp_path, "tc") as vm:
        vm.load_stream(tmp_path / "out.mig", caps=caps)
        mem = vm.pmemsave(0, 32 * MiB, tmp_path / "tc.dump")
        assert differing_pages(mem, (tmp_path / "orig" / "pc.ram.bin").read_bytes(), X86_EXCLUDE) == []
        vm.cmd("cont")
        text = wait_for(vm, "migstream guest tick", timeout=30)
        assert vm.cmd("query-status")["status"] == "running"
    assert "migstream guest tick" in text or "migstream guest ready" not in text


def test_rewrite_errors(tmp_path):
    stream, _ = sample_files(tmp_path, "x86-running")
    cases = [
        (["--patch-hex", "nosuch.ram:0=00"], "no RAM block 'nosuch.ram'"),
        (["--patch-hex", f"pc.ram:{32 * MiB - 1:#x}=0000"], "run past the end of block pc.ram"),
        (["--patch-hex", "pc.ram:zz=00"], "is not a number"),
        (["--patch", "pc.ram:0=/nonexistent"], "cannot read /nonexistent"),
        ([], "nothing to patch"),
    ]
    for args, message in cases:
        out = tmp_path / "x.mig"
        r = ms("rewrite", stream, "-o", out, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert not out.exists() and not Path(f"{out}.tmp").exists()
    r = ms("transcode", tmp_path / "missing.mig", "-o", tmp_path / "y.mig")
    assert r.returncode == 2 and "Traceback" not in r.stderr
