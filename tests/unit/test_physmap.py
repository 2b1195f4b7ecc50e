"""The guest-physical layout rules (image/physmap.py), the image readers and
writers, and the one-line errors of ``dump`` and of encoding from physical images.
The layouts themselves are held to real QEMU in tests/qemu/test_qemu_dump.py; these
cover the rules no QEMU here runs (pre-2.0 pc, microvm, AMD, riscv, ppc64, s390x)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from migstream.containers.physimage import PhysicalImage
from migstream.errors import UsageError
from migstream.image.physmap import BlockInfo
from migstream.image.physmap import parse_map_options
from migstream.image.physmap import physical_map

GiB = 1 << 30
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def spans(pmap):
    return [(r.block, r.offset, r.gpa, r.size) for r in pmap.ranges]


def test_pc_gigabyte_align_and_before_2_0():
    blocks = [BlockInfo("pc.ram", 5 * GiB), BlockInfo("pc.bios", 256 << 10), BlockInfo("pc.rom", 128 << 10)]
    m = physical_map("pc-i440fx-7.2", blocks)
    assert spans(m) == [("pc.ram", 0, 0, 3 * GiB), ("pc.bios", 0, 4 * GiB - (256 << 10), 256 << 10),
                        ("pc.ram", 3 * GiB, 4 * GiB, 2 * GiB)]  # fmt: skip
    assert m.unmapped == ["pc.rom"]
    old = physical_map("pc-i440fx-1.7", blocks)
    assert spans(old)[0] == ("pc.ram", 0, 0, 0xE0000000)
    assert spans(old)[-1] == ("pc.ram", 0xE0000000, 4 * GiB, 5 * GiB - 0xE0000000)
    # 3.25 GiB: below the 3.5 GiB split, all low
    assert spans(physical_map("pc-i440fx-7.2", [BlockInfo("pc.ram", 0xD0000000)])) == [("pc.ram", 0, 0, 0xD0000000)]


def test_q35_and_microvm():
    assert spans(physical_map("pc-q35-7.2", [BlockInfo("pc.ram", 0xB0000000)])) == [
        ("pc.ram", 0, 0, 2 * GiB), ("pc.ram", 2 * GiB, 4 * GiB, 0x30000000)]  # fmt: skip
    assert spans(physical_map("pc-q35-7.2", [BlockInfo("pc.ram", 0xAFFFF000)])) == [("pc.ram", 0, 0, 0xAFFFF000)]
    assert spans(physical_map("microvm", [BlockInfo("microvm.ram", 4 * GiB)])) == [
        ("microvm.ram", 0, 0, 0xE0000000), ("microvm.ram", 0xE0000000, 4 * GiB, 0x20000000)]  # fmt: skip


def test_numa_memdevs_packed_in_node_order_straddle_the_hole():
    blocks = [BlockInfo("m10", GiB), BlockInfo("m2", 2 * GiB), BlockInfo("m1", 2 * GiB)]
    m = physical_map("pc-i440fx-7.2", blocks)
    assert spans(m) == [("m1", 0, 0, 2 * GiB), ("m2", 0, 2 * GiB, GiB), ("m2", GiB, 4 * GiB, GiB),
                        ("m10", 0, 5 * GiB, GiB)]  # fmt: skip
    assert "m1, m2, m10" in m.rule
    # --numa, and x-ignore-shared container offsets, decide the order
    assert spans(physical_map("pc-i440fx-7.2", blocks, numa_order=["m2", "m1", "m10"]))[0] == ("m2", 0, 0, 2 * GiB)
    shared = [BlockInfo("m1", 2 * GiB, 2 * GiB), BlockInfo("m2", 2 * GiB, 0)]
    assert spans(physical_map("pc-i440fx-7.2", shared))[0] == ("m2", 0, 0, 2 * GiB)


@pytest.mark.parametrize(
    "machine, block, base",
    [("virt-7.2", "mach-virt.ram", 0x40000000), ("virt", "riscv_virt_board.ram", 0x80000000),
     ("pseries-7.2", "ppc_spapr.ram", 0), ("s390-ccw-virtio-7.2", "s390.ram", 0)],
)  # fmt: skip
def test_flat_machines(machine, block, base):
    assert spans(physical_map(machine, [BlockInfo(block, 8 * GiB)])) == [(block, 0, base, 8 * GiB)]


def test_amd_1tib_rule_needs_the_vendor():
    big = [BlockInfo("pc.ram", 1011 * GiB)]
    with pytest.raises(UsageError, match="--cpu-vendor"):
        physical_map("pc-q35-7.2", big)
    assert spans(physical_map("pc-q35-7.2", big, cpu_vendor="amd"))[-1][2] == 1 << 40
    assert spans(physical_map("pc-q35-7.2", big, cpu_vendor="intel"))[-1][2] == 4 * GiB
    # machines before 7.1 never relocate
    assert spans(physical_map("pc-q35-7.0", big))[-1][2] == 4 * GiB


def test_map_overrides_and_errors():
    blocks = [BlockInfo("pc.ram", 4 * GiB), BlockInfo("dimm0", GiB)]
    with pytest.raises(UsageError, match="no RAM block nope"):
        physical_map("pc-i440fx-7.2", blocks, overrides=parse_map_options(["nope=0x0"]))
    assert physical_map("pc-i440fx-7.2", blocks).unmapped == ["dimm0"]  # pc.ram is the RAM: dimm0 needs --map
    m = physical_map("pc-i440fx-7.2", blocks, overrides=parse_map_options(["dimm0=0x200000000"]))
    assert ("dimm0", 0, 8 * GiB, GiB) in spans(m)
    # a non-default max-ram-below-4g, by pieces
    m = physical_map(
        "pc-i440fx-7.2", blocks, overrides=parse_map_options(["pc.ram=0", "pc.ram:0x80000000=0x100000000"])
    )
    assert ("pc.ram", 2 * GiB, 4 * GiB, 2 * GiB) in spans(m)
    for bad, msg in [("pc.ram", "expected BLOCK=GPA"), ("pc.ram=zz", "must be numbers"), ("pc.ram=-1", "must be in 0")]:
        with pytest.raises(UsageError, match=msg):
            parse_map_options([bad])
    with pytest.raises(UsageError, match="multiples of 4096"):
        physical_map("pc-i440fx-7.2", blocks, overrides={("dimm0", 0): 0x123})
    with pytest.raises(UsageError, match="overlap: pc.ram"):
        physical_map("pc-i440fx-7.2", blocks, overrides={("dimm0", 0): 0x1000})
    with pytest.raises(UsageError, match="no layout rule"):
        physical_map("sun4u", [BlockInfo("sun4u.ram", GiB)])


def run(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, msg",
    [(["--map", "pc.ram"], "expected BLOCK=GPA"), (["--map", "pc.bios=0x0"], "overlap"),
     (["--format", "vmcore"], "one of elf, raw, lime"), (["--cpu-vendor", "via"], "one of amd, intel")],
)  # fmt: skip
def test_dump_one_line_errors(tmp_path, args, msg):
    r = run("dump", str(SAMPLES / "x86-xbzrle.mig.zst"), "-o", str(tmp_path / "o"), *args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


def test_formats_agree_and_encode_back(tmp_path):
    """ELF, LiME and raw of one stream hold the same bytes; each, encoded with the
    stream as template, dumps to the same raw image again."""
    src = SAMPLES / "x86-xbzrle.mig.zst"
    for fmt in ("elf", "lime", "raw"):
        assert run("dump", str(src), "-o", str(tmp_path / f"d.{fmt}"), "--format", fmt).returncode == 0
    with PhysicalImage(str(tmp_path / "d.elf")) as e, PhysicalImage(str(tmp_path / "d.lime")) as li:
        assert [(r.gpa, r.memsz) for r in e.ranges] == [(r.gpa, r.memsz) for r in li.ranges]
        with PhysicalImage(str(tmp_path / "d.raw")) as raw:
            ram = [e.read(r.gpa, r.memsz) for r in e.ranges]
            assert ram == [li.read(r.gpa, r.memsz) for r in e.ranges] == [raw.read(r.gpa, r.memsz) for r in e.ranges]
    head = (tmp_path / "d.elf").read_bytes()[:64]
    assert head[4] == 2 and struct.unpack_from("<H", head, 16)[0] == 4  # ELFCLASS64, ET_CORE
    assert b"machine=pc-i440fx-7.2" in (tmp_path / "d.elf").read_bytes()[:4096]
    for fmt in ("elf", "lime"):
        out = tmp_path / f"back-{fmt}.mig"
        r = run("encode", str(tmp_path / f"d.{fmt}"), "--template", str(src), "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert run("dump", str(out), "-o", str(tmp_path / "again.raw"), "--format", "raw").returncode == 0
        with PhysicalImage(str(tmp_path / "again.raw")) as again:
            assert [again.read(r.gpa, r.memsz) for r in e.ranges] == ram


def test_encode_refuses_image_outside_template(tmp_path):
    lime = tmp_path / "x.lime"
    lime.write_bytes(struct.pack("<IIQQQ", 0x4C694D45, 1, 0x200000000, 0x200000FFF, 0) + bytes(4096))
    r = run("encode", str(lime), "--template", str(SAMPLES / "x86-xbzrle.mig.zst"), "-o", str(tmp_path / "o.mig"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "GPA 0x200000000-0x200000fff is not RAM of template" in r.stderr


@pytest.mark.parametrize(
    "blob, msg",
    [
        (b"\x7fELF\x03\x01" + bytes(58), "ELF class 3"),
        (struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01", 4, 62, 1, 0, 1 << 40, 0, 0, 64, 56, 9, 0, 0, 0),
         "run past the end"),
        (struct.pack("<IIQQQ", 0x4C694D45, 1, 0x2000, 0x1000, 0), r"ends \(0x1000\) before it starts"),
        (struct.pack("<IIQQQ", 0x4C694D45, 1, 0, 0xFFFFFFFF, 0), "runs past the end of the file"),
        (struct.pack("<IIQQQ", 0x4C694D45, 2, 0, 0xFFF, 0) + bytes(4096), "LiME version 2"),
        (struct.pack("<IIQQQ", 0x4C694D45, 1, 0x1000, 0x1FFF, 0) + bytes(4096)
         + struct.pack("<IIQQQ", 0x4C694D45, 1, 0x1800, 0x27FF, 0) + bytes(4096), "ranges overlap"),
    ],
)  # fmt: skip
def test_hostile_images_refused(tmp_path, blob, msg):
    p = tmp_path / "bad"
    p.write_bytes(blob)
    with pytest.raises(UsageError, match=msg):
        PhysicalImage(str(p))


def test_ram_image_splits_writes_across_pieces(tmp_path):
    """A write of consecutive pages (one multifd packet) that crosses a block's piece
    boundary (pc.ram at the PCI hole) lands on both sides, at the right file offsets;
    an XBZRLE-style read-back finds each page again."""
    import os

    from migstream.events import MultifdPacket
    from migstream.image.ramimage import RamImage

    out = tmp_path / "placed"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 64 * 4096)
    # block pages 0-3 at file page 10, pages 4-7 at file page 40
    pieces = [(0, 4 * 4096, 10 * 4096), (4 * 4096, 4 * 4096, 40 * 4096)]
    img = RamImage(str(tmp_path / "scratch"), 4096, placement={"pc.ram": (fd, pieces)})
    pages = b"".join(bytes([p + 1]) * 4096 for p in range(2, 7))
    img.apply(MultifdPacket(0, 0, "ch", 1, 0, "pc.ram", [p * 4096 for p in range(2, 7)], [], pages, 4096, len(pages)))
    img.apply(MultifdPacket(0, 0, "ch", 2, 0, "other", [0], [], bytes(4096), 4096, 4096))  # not placed: left out
    img.flush()
    data = out.read_bytes()
    for p in range(2, 7):
        at = (10 + p if p < 4 else 40 + p - 4) * 4096
        assert data[at : at + 4096] == bytes([p + 1]) * 4096, p
        assert img._get(img.blocks["pc.ram"], p * 4096, 4096) == bytes([p + 1]) * 4096
    assert sum(1 for b in data if b) == 5 * 4096  # nothing anywhere else
    img.close(machine=None, complete=True)
    os.close(fd)
