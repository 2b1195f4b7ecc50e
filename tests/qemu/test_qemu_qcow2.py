"""qcow2 internal snapshots made by real QEMU 7.2 (HMP savevm after `stop`, twice):
`snapshots --json` equals `qemu-img info`, and `extract --snapshot NAME` equals the RAM
QEMU restores with `-loadvm NAME` (paused, pmemsave; outside the x86 VGA/ROM window).
Images: 64 KiB clusters on a 6 GiB virtual disk (the state sits at 6 GiB), 2 MiB
clusters with extended L2 entries (subclusters), and a version 2 image with 4 KiB
clusters."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.qcow2 import SNAPSHOTS
from support.qcow2 import loadvm_ram
from support.qcow2 import make_image
from support.qcow2 import qemu_img_snapshots
from support.qemu import QEMU_X86
from support.qemu import X86_EXCLUDE
from support.qemu import differing_pages
from support.qemu import require_qemu

CASES = {
    "64k-6g": ("64k", "6G", ()),
    "2m-extl2": ("2M", "1M", ("extended_l2=on",)),
    "v2-4k": ("4k", "1M", ("compat=0.10",)),  # qcow2 version 2, small clusters (many L2 tables)
}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="mgq-"))  # short: unix socket paths
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.mark.parametrize("case", list(CASES))
def test_savevm_snapshots_extract_like_loadvm(work, case):
    require_qemu(QEMU_X86, "qemu-img", "nasm")
    cluster, disk, options = CASES[case]
    image = make_image(QEMU_X86, "qemu-img", work, case, cluster_size=cluster, disk_size=disk, options=options)

    truth = qemu_img_snapshots("qemu-img", image)
    r = cli("snapshots", "--json", image)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["snapshots"]
    assert [(s["id"], s["name"], s["vm_state_size"]) for s in got] == [
        (t["id"], t["name"], t["vm-state-size"]) for t in truth
    ]
    assert len(got) == 2

    rams = []
    for snap in SNAPSHOTS:
        ram = loadvm_ram(QEMU_X86, image, snap, work)
        r = cli("extract", "--snapshot", snap, "-o", work / snap, image)
        assert r.returncode == 0, r.stderr
        assert json.loads((work / snap / "manifest.json").read_text())["complete"]
        assert differing_pages(ram, (work / snap / "pc.ram.bin").read_bytes(), X86_EXCLUDE) == []
        rams.append(ram)
    assert differing_pages(rams[0], rams[1], X86_EXCLUDE)  # the guest ran between the snapshots


def _set_vm_state(image: Path, size: int, disk_size: int) -> None:
    """Give the image's only snapshot (made by `qemu-img snapshot -c`, disk only) a VM
    state of ``size`` bytes and the disk size whose VM state area starts where the
    test wrote it (the two fields savevm fills in; block/qcow2-snapshot.c)."""
    with open(image, "r+b") as f:
        head = f.read(72)
        table = int.from_bytes(head[64:72], "big")
        f.seek(table + 32)
        f.write(min(size, 0xFFFFFFFF).to_bytes(4, "big"))
        extra = int.from_bytes(f.read(4), "big")
        assert extra >= 16
        f.write(size.to_bytes(8, "big") + disk_size.to_bytes(8, "big"))


@pytest.mark.parametrize("options", ["compression_type=zlib", "compression_type=zstd", "extended_l2=on"])
def test_clusters_qemu_io_wrote_read_back(work, options):
    """Compressed clusters (zlib, zstd) and zero subclusters, written by QEMU itself
    (qemu-io `write -c`, `write -z`) into a snapshot's VM state area: the state read
    back equals the bytes written.  savevm writes plain clusters only, and `qemu-img
    convert -c` drops internal snapshots, so this is how QEMU makes such clusters."""
    require_qemu("qemu-img", "qemu-io")
    from migstream.containers.qcow2 import Qcow2Image
    from migstream.containers.qcow2 import VmStateReader
    from support.samples import SAMPLES
    from support.samples import read_zst

    stream = read_zst(SAMPLES / "x86-fresh-S.mig.zst")
    extended = "extended_l2" in options
    padded = stream + bytes(-len(stream) % (64 << 10))
    (work / "stream.pad").write_bytes(padded)
    image = work / "c.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", options, str(image), "2G"], check=True)
    # The VM state of a 1 MiB disk, 64 KiB clusters: at what one L1 entry covers,
    # 512 MiB (8-byte L2 entries) or 256 MiB (16-byte extended entries, 2 KiB subclusters).
    at = vm_offset = (256 << 20) if extended else (512 << 20)
    cmds = [f"write -q {'' if extended else '-c '}-s {work / 'stream.pad'} {at} {len(padded)}"]
    expect = bytearray(stream)
    if extended:
        zero_at = 65536 + 3 * 2048  # one subcluster of the second cluster reads as zero
        cmds.append(f"write -q -z {at + zero_at} 2048")
        expect[zero_at : zero_at + 2048] = bytes(2048)
    for c in cmds:
        r = subprocess.run(["qemu-io", "-f", "qcow2", "-c", c, str(image)], capture_output=True, text=True)
        assert r.returncode == 0 and "error" not in r.stdout.lower(), r.stdout + r.stderr
    subprocess.run(["qemu-img", "snapshot", "-c", "s", str(image)], check=True)
    _set_vm_state(image, len(stream), 1 << 20)
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    if not extended:
        assert "compressed clusters" in check.stdout and " 0.00% compressed" not in check.stdout, check.stdout
    with open(image, "rb") as f:
        img = Qcow2Image(f.fileno(), str(image))
        snap = img.select("s")
        assert img.vm_state_offset(snap) == vm_offset
        got = b"".join(VmStateReader(img, snap).chunks(1 << 20))
    assert got == bytes(expect)
    r = cli("info", f"{image}@s")
    assert (r.returncode == 0) != extended, r.stderr  # a zeroed subcluster breaks the stream
