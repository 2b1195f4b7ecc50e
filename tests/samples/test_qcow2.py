"""qcow2 internal snapshots made by real QEMU 11.1 (samples/make_qcow2_samples.py):
`snapshots --json` equals `qemu-img info`, and `extract --snapshot NAME` equals the RAM
QEMU restored with `-loadvm NAME` (outside the x86 VGA/ROM window).  QEMU 7.2 runs
live in tests/qemu/test_qemu_qcow2.py; hostile images in tests/unit/test_qcow2_hostile.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from support.qemu import X86_EXCLUDE
from support.qemu import differing_pages
from support.samples import SAMPLES

IMAGES = ["q11-qcow2-64k-6g-zstd", "q11-qcow2-2m-extl2"]
SNAPS = ["snap1", "snap2"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def unzstd(path: Path) -> bytes:
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


@pytest.fixture(scope="module", params=IMAGES)
def image(request, tmp_path_factory):
    p = tmp_path_factory.mktemp("q11") / f"{request.param}.qcow2"
    p.write_bytes(unzstd(SAMPLES / f"{request.param}.qcow2.zst"))
    return request.param, p


def test_snapshots_json_matches_qemu_img(image):
    name, path = image
    truth = json.loads((SAMPLES / f"{name}.qemu-img.json").read_text())
    r = cli("snapshots", "--json", path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1
    got = doc["snapshots"]
    assert [(s["id"], s["name"], s["vm_state_size"]) for s in got] == [
        (t["id"], t["name"], t["vm-state-size"]) for t in truth
    ]
    for s, t in zip(got, truth):
        assert (s["date_sec"], s["date_nsec"]) == (t["date-sec"], t["date-nsec"])
        assert s["vm_clock_nsec"] == t["vm-clock-sec"] * 10**9 + t["vm-clock-nsec"]
        assert s["vm_state_size"] > 1 << 20  # real states, not empty entries


@pytest.mark.parametrize("snap", SNAPS)
def test_extract_snapshot_equals_loadvm_ram(image, snap, tmp_path):
    name, path = image
    truth = unzstd(SAMPLES / f"{name}.{snap}.ram.zst")
    r = cli("extract", "--snapshot", snap, "-o", tmp_path / "x", path)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["complete"]
    ram = (tmp_path / "x" / "pc.ram.bin").read_bytes()
    assert len(ram) == len(truth) == 64 << 20
    assert differing_pages(truth, ram, X86_EXCLUDE) == []


def test_two_snapshots_differ_and_diff_says_so(image):
    name, path = image
    a, b = (unzstd(SAMPLES / f"{name}.{s}.ram.zst") for s in SNAPS)
    assert differing_pages(a, b, X86_EXCLUDE)  # the guest ran between the two savevm
    r = cli("diff", "--json", f"{path}@snap1", f"{path}@2")  # by name and by id
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert not doc["equal"]


def test_no_selector_lists_the_snapshots(image):
    _, path = image
    r = cli("info", path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "'snap1'" in r.stderr and "'snap2'" in r.stderr
    r = cli("info", "--snapshot", "nosuch", path)
    assert r.returncode == 2 and "no snapshot 'nosuch'" in r.stderr


def test_tui_index_reads_pages_back_through_the_snapshot(image):
    """The TUI's index reads records back by offset: for a qcow2 snapshot through the
    snapshot's L1 table (the image file's own bytes at those offsets are something else)."""
    from migstream.tools.index import StreamIndex
    from migstream.tools.index.rows import RowKind

    name, path = image
    truth = unzstd(SAMPLES / f"{name}.snap1.ram.zst")
    idx = StreamIndex(f"{path}@snap1")
    try:
        for _ in idx.scan():
            pass
        assert idx.complete and idx.error is None and idx.read(0, 4) == b"QEVM"
        ram = next(i for i, b in enumerate(idx.blocks) if b.name == "pc.ram")
        r = idx.rows()
        rows = [i for i in range(r.count) if r.kind[i] == RowKind.PAGE and r.block[i] == ram]
        checked = 0
        for row in rows[:: max(1, len(rows) // 300)]:
            addr = int(r.page[row]) * 4096
            if 0xA0000 <= addr < 0x100000:
                continue
            assert idx.page_content(row) == truth[addr : addr + 4096], hex(addr)
            checked += 1
        assert checked > 200
    finally:
        idx.close()
