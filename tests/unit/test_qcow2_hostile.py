"""Hostile qcow2 images: each damage a reader can meet gets one line with the byte
offset, exit code 2, never a traceback; plus a bounded sweep of random damage to a
real image under a memory cap (fuzz/qcow2_sweeps.py).  Real images: tests/samples/
test_qcow2.py (QEMU 11.1) and tests/qemu/test_qemu_qcow2.py (QEMU 7.2 live)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import zstandard

from migstream.containers.qcow2 import OFFSET_MASK
from migstream.containers.qcow2 import Qcow2Image
from migstream.containers.qcow2 import split_snapshot
from support.samples import ROOT
from support.samples import SAMPLES


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    p = tmp_path_factory.mktemp("q2") / "pristine.qcow2"
    with open(SAMPLES / "q11-qcow2-64k-6g-zstd.qcow2.zst", "rb") as src, open(p, "wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    return p


@pytest.fixture
def image(pristine, tmp_path):
    p = tmp_path / "img.qcow2"
    os.system(f"cp --sparse=always {pristine} {p}")
    return p


def poke(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def layout(path):
    with open(path, "rb") as f:
        img = Qcow2Image(f.fileno(), str(path))
        snap = img.snapshots[0]
        l1_index = img.vm_state_offset(snap) >> (img.cluster_bits + img.l2_bits)
        l1_at = snap.l1_table_offset + 8 * l1_index
        l2 = struct.unpack(">Q", os.pread(f.fileno(), 8, l1_at))[0] & OFFSET_MASK
        l2_index = (img.vm_state_offset(snap) >> img.cluster_bits) & ((1 << img.l2_bits) - 1)
        return img, snap, l1_at, l2 + 8 * l2_index


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    return r.stderr


CASES = {
    # name: (file offset or a layout key, bytes, what the error says)
    "encrypted": (32, struct.pack(">I", 1), "encrypted image", "offset 0x20"),
    "corrupt": (72 + 7, bytes([2]), "marked corrupt", "offset 0x48"),
    "external-data-file": (72 + 7, bytes([4]), "external data file", "offset 0x48"),
    "unknown-feature": (72, bytes([0x80]), "unknown incompatible feature", "offset 0x48"),
    "version-4": (4, struct.pack(">I", 4), "unsupported qcow2 version 4", "offset 0x4"),
    "cluster-bits-30": (20, struct.pack(">I", 30), "cluster_bits 30", "offset 0x14"),
    "refcount-order-7": (96, struct.pack(">I", 7), "refcount order 7", "offset 0x60"),
    "snapshot-table-outside": (64, struct.pack(">Q", 1 << 50), "snapshot table", "offset 0x40"),
    "too-many-snapshots": (60, struct.pack(">I", 1 << 20), "too many snapshots", "offset 0x3c"),
    "l1-outside": ("l1", struct.pack(">Q", 1 << 49), "L2 table 0x2000000000000, outside the file", None),
    "l2-outside": ("l2", struct.pack(">Q", (1 << 63) | (1 << 48)), "points to 0x1000000000000, outside the file", None),
    "compressed-outside": ("l2", struct.pack(">Q", (1 << 62) | ((1 << 46) - 512)), "compressed cluster", None),
    "compressed-garbage": ("l2", struct.pack(">Q", (1 << 62) | 512), "does not decompress", None),
    "l2-unaligned": ("l2", struct.pack(">Q", (1 << 63) | 0x10200), "unaligned cluster 0x10200", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_image_one_line_error(image, case):
    where, data, needle, offset = CASES[case]
    if isinstance(where, str):
        _, _, l1_at, l2_at = layout(image)
        where = {"l1": l1_at, "l2": l2_at}[where]
        offset = f"offset 0x{where:x}"  # the entry that points astray
    poke(image, where, data)
    one_line_error(cli("info", f"{image}@snap1"), needle, offset)


def test_snapshot_without_vm_state(image):
    _, snap, _, _ = layout(image)
    poke(image, snap.entry_offset + 32, bytes(4))
    poke(image, snap.entry_offset + 40, bytes(8))  # vm_state_size_large
    one_line_error(cli("info", f"{image}@snap1"), "has no VM state")
    r = cli("info", image)  # snap2 is now the only one with a state
    assert r.returncode == 0, r.stderr
    r = cli("snapshots", "--json", image)
    assert [s["vm_state_size"] for s in json.loads(r.stdout)["snapshots"]][0] == 0


def test_state_larger_than_its_l1_table_maps(image):
    _, snap, _, _ = layout(image)
    poke(image, snap.entry_offset + 40, (1 << 47).to_bytes(8, "big"))
    one_line_error(
        cli("info", f"{image}@snap1"), "runs past what its L1 table maps", f"offset 0x{snap.entry_offset + 32:x}"
    )


def test_truncated_state_is_one_line(image):
    _, _, _, l2_at = layout(image)
    with open(image, "rb") as f:
        host = struct.unpack(">Q", os.pread(f.fileno(), 8, l2_at))[0] & OFFSET_MASK
    os.truncate(image, host + 100)  # inside the state's first data cluster
    out = one_line_error(cli("info", f"{image}@snap1"))
    assert "outside the file" in out or "runs past the end of the file" in out


def test_selector_syntax(image, tmp_path):
    assert split_snapshot(f"{image}@snap1") == (str(image), "snap1")
    assert split_snapshot(f"{image}@x@y") == (str(image), "x@y")  # names may hold @
    plain = tmp_path / "a@b"
    plain.write_bytes(b"QEVM")
    assert split_snapshot(str(plain)) == (str(plain), None)  # an existing path is taken as it is
    not_qcow2 = tmp_path / "s.mig"
    not_qcow2.write_bytes(b"QEVM\0\0\0\3")
    one_line_error(cli("info", "--snapshot", "1", not_qcow2), "qcow2 images only")
    one_line_error(cli("info", "--snapshot", "1", f"{image}@snap1"), "both with @ and with --snapshot")


def test_damage_sweep_under_memory_cap():
    """Random damage to the metadata of a real QEMU 11.1 image and truncations, 768 MiB
    address-space cap, 5 s per input (python fuzz/qcow2_sweeps.py for longer runs)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "qcow2_sweeps.py"), "--count", "250", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["violation_count"] == 0, summary["violations"]
    assert summary["inputs"] == 270 and summary["error"] > 50  # the damage was seen


def test_state_over_4_gib_uses_the_64_bit_size(image):
    """vm_state_size (u32) is 0 when the state is over 4 GiB; the extra data's
    vm_state_size_large is the size (block/qcow2-snapshot.c).  The bytes past what
    savevm wrote are unallocated and read as zeros: the reader covers the whole size."""
    from migstream.containers.qcow2 import VmStateReader

    img, snap, _, _ = layout(image)
    big = (5 << 30) + 12345
    # savevm would have grown the L1 table to map all of it: 32 entries of 512 MiB
    # (the table's cluster has room; the entries past the old end map nothing).
    assert snap.l1_size < 32 and img.cluster_size >= 32 * 8
    poke(image, snap.l1_table_offset + 8 * snap.l1_size, bytes(8 * (32 - snap.l1_size)))
    poke(image, snap.entry_offset + 8, struct.pack(">I", 32))
    poke(image, snap.entry_offset + 32, bytes(4))
    poke(image, snap.entry_offset + 40, big.to_bytes(8, "big"))
    r = cli("snapshots", "--json", image)
    assert json.loads(r.stdout)["snapshots"][0]["vm_state_size"] == big
    with open(image, "rb") as f:
        img = Qcow2Image(f.fileno(), str(image))
        reader = VmStateReader(img, img.select("snap1"))
        assert reader.size == big
        assert reader.read(4) == b"QEVM"
        reader.seek(-100, 2)
        assert reader.read() == bytes(100) and reader.tell() == big
