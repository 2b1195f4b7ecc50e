"""Real QEMU 7.2 block migration (capability "block", with and without zero-blocks):
`extract` rebuilds each disk from the stream as QEMU's loader writes it, and the
result equals the source's disk image byte for byte."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from migstream.tools.extract import extract
from support.qemu import QEMU_X86
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import build_guest
from support.qemu import guest_args
from support.qemu import require_qemu

CHUNK = 1 << 20


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="mgs-"))  # short: unix socket paths
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def make_disk(path: Path) -> bytes:
    """4 MiB: random, zero, text with a zero gap, random; the boot disk is migrated too."""
    rnd = random.Random(7)
    text = (b"block migration sends whole disks in 1 MiB chunks. " * 21000)[:CHUNK]
    text = text[: CHUNK // 2] + bytes(4096) + text[CHUNK // 2 + 4096 :]
    data = rnd.randbytes(CHUNK) + bytes(CHUNK) + text + rnd.randbytes(CHUNK)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("zero_blocks", [False, True], ids=["block", "block+zero-blocks"])
def test_extract_rebuilds_the_migrated_disk(work, zero_blocks):
    require_qemu()
    disk = make_disk(work / "disk.raw")
    img = build_guest(work)
    args = guest_args(img, ram_mib=32) + [
        "-S",
        "-drive",
        f"file={work / 'disk.raw'},format=raw,if=none,id=d1",
        "-device",
        "virtio-blk-pci,drive=d1",
    ]
    out = work / "block.mig"
    with Vm(QEMU_X86, args, work, "src") as vm:
        vm.caps("block", *(["zero-blocks"] if zero_blocks else []))
        vm.cmd("migrate-set-parameters", **{"max-bandwidth": 256 * MiB})
        vm.cmd("migrate", uri=f"exec:cat > {out}")
        vm.wait_migration()
    res = extract(str(out), str(work / "x"))
    assert res.error is None and res.manifest["complete"], res.error
    disks = {d["device"]: d for d in res.manifest["disks"]}
    assert set(disks) == {"d1", "ide0-hd0"}
    d1 = disks["d1"]
    assert d1["length"] == len(disk) and d1["chunks"] >= 4
    assert (d1["zero_chunks"] >= 1) == zero_blocks  # the all-zero second MiB, with zero-blocks only
    assert (work / "x" / d1["file"]).read_bytes() == disk
    # The boot disk (1 MiB, snapshot=on) is migrated as it is.
    assert (work / "x" / disks["ide0-hd0"]["file"]).read_bytes() == img.read_bytes()

    # `info` tells the same from the command line.
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "info", "--json", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)["block_devices"]["d1"]
    assert info["chunks"] == d1["chunks"] and info["zero_chunks"] == d1["zero_chunks"]
    assert info["bytes"] == (d1["chunks"] - d1["zero_chunks"]) * CHUNK
