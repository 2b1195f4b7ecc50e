"""Streams from `migstream encode`, loaded by real QEMU 7.2 (-incoming defer).

Truth is QEMU: the destination's guest memory read back with pmemsave must equal
the image we encoded (on x86 outside 0xA0000-0xFFFFF, which reads through VGA
MMIO / the BIOS ROM alias), and a running guest re-encoded from its own capture
must keep running after `cont`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from migstream import PageRecord
from migstream import PageRun
from migstream import SectionStart
from migstream import StreamDecoder
from migstream.wire.grammar import RamFlag
from migstream.wire.grammar import SectionType
from support.images import PAGE
from support.images import dirty
from support.images import mixed_image
from support.images import zero_page_count
from support.qemu import QEMU_X86
from support.qemu import X86_EXCLUDE
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import differing_pages
from support.qemu import image_ram_args
from support.qemu import need
from support.samples import SAMPLES
from support.samples import read_zst
from support.samples import sample_by_name

PC = "pc-i440fx-7.2"


def run_encode(*args, ok=True):
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "encode", *map(str, args)], capture_output=True, text=True
    )
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def extract_sample(name: str, stream: Path, out: Path) -> Path:
    """Write sample ``name``'s stream to ``stream`` and `migstream extract` it into ``out``."""
    stream.write_bytes(read_zst(SAMPLES / sample_by_name(name)["stream"]))
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "extract", str(stream), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return stream


def records(path):
    """[(section type, flags, block, addr, payload bytes)] of every RAM page record."""
    dec = StreamDecoder()
    with open(path, "rb") as f:
        dec.feed(f.read())
    dec.feed(b"")
    out = []
    section = None
    for ev in dec:
        if isinstance(ev, SectionStart):
            section = ev.type.name
        elif isinstance(ev, PageRun):
            out += [(section, r.flags, r.block, r.addr, bytes(r.data), r.fill) for r in ev.records()]
        elif isinstance(ev, PageRecord):
            out.append((section, ev.flags, ev.block, ev.addr, bytes(ev.data), ev.fill))
    return out


def x86_destination(tmp_path, tag, extra=()):
    need(QEMU_X86)
    return Vm(QEMU_X86, ["-M", "pc", "-m", "32M", "-S", "-incoming", "defer", *extra], tmp_path, tag)


def load_and_dump(tmp_path, stream, size, *, caps=(), tag="dst"):
    with x86_destination(tmp_path, tag) as vm:
        vm.load_stream(stream, caps=caps)
        assert vm.cmd("query-status")["status"] == "paused"
        return vm.pmemsave(0, size, tmp_path / f"{tag}.dump")


def test_plain_stream_loads(tmp_path):
    img = mixed_image(32 * MiB, seed=11, zero=0.5)
    (tmp_path / "ram.img").write_bytes(img)
    r = run_encode(
        tmp_path / "ram.img",
        "--block",
        "pc.ram",
        "--machine",
        PC,
        "-o",
        tmp_path / "s.mig",
        "--stats-json",
        tmp_path / "stats.json",
    )
    stats = json.loads((tmp_path / "stats.json").read_text())
    zeros = zero_page_count(img)
    assert stats["ram"]["duplicate"] == zeros
    assert stats["ram"]["normal"] == len(img) // PAGE - zeros
    assert "transferred" in r.stdout
    dump = load_and_dump(tmp_path, tmp_path / "s.mig", len(img))
    assert differing_pages(dump, img, X86_EXCLUDE) == []


def test_zero_heavy_stream_loads(tmp_path):
    img = mixed_image(32 * MiB, seed=12, zero=0.98)
    (tmp_path / "ram.img").write_bytes(img)
    run_encode(tmp_path / "ram.img", "--block", "pc.ram", "--machine", PC, "-o", tmp_path / "s.mig")
    recs = records(tmp_path / "s.mig")
    kinds = [flags & ~RamFlag.CONTINUE for _, flags, *_ in recs]
    assert kinds.count(RamFlag.ZERO) == zero_page_count(img)
    assert all(fill == 0 for *_, fill in recs)
    # Only the first record names the block.
    assert recs[0][1] & RamFlag.CONTINUE == 0 and all(r[1] & RamFlag.CONTINUE for r in recs[1:])
    dump = load_and_dump(tmp_path, tmp_path / "s.mig", len(img))
    assert differing_pages(dump, img, X86_EXCLUDE) == []


def test_iterations_with_xbzrle_load(tmp_path):
    img0 = mixed_image(32 * MiB, seed=13, zero=0.5)
    # A 1 MiB cache has 256 slots: of the 400 hot pages, 1000..1255 get cached
    # after the bulk stage, 1256..1399 collide with fresh entries and keep missing.
    hot = list(range(1000, 1400))
    img1 = dirty(dirty(img0, hot, "small", 1), range(3000, 3010), "zero", 2)
    img2 = dirty(dirty(img1, hot[100:], "small", 3), hot[:100], "random", 4)  # random: overflow
    img3 = dirty(img2, hot[100:200], "small", 5)
    paths = []
    for i, im in enumerate((img0, img1, img2, img3)):
        p = tmp_path / f"ram{i}.img"
        p.write_bytes(im)
        paths.append(p)
    run_encode(
        paths[0],
        "--then",
        paths[1],
        "--then",
        paths[2],
        "--then",
        paths[3],
        "--block",
        "pc.ram",
        "--machine",
        PC,
        "--xbzrle-cache",
        "1M",
        "-o",
        tmp_path / "s.mig",
        "--stats-json",
        tmp_path / "stats.json",
    )
    stats = json.loads((tmp_path / "stats.json").read_text())
    recs = records(tmp_path / "s.mig")
    xb_part = [r for r in recs if r[1] & ~RamFlag.CONTINUE == RamFlag.XBZRLE and r[0] == "PART"]
    xb_end = [r for r in recs if r[1] & ~RamFlag.CONTINUE == RamFlag.XBZRLE and r[0] == "END"]
    assert xb_part and xb_end
    assert stats["xbzrle_cache"]["overflow"] > 0  # the random rewrites
    assert stats["xbzrle_cache"]["cache_miss"] >= len(hot)  # the first round after bulk
    assert stats["ram"]["dirty_sync_count"] == 4
    dump = load_and_dump(tmp_path, tmp_path / "s.mig", len(img3))
    assert differing_pages(dump, img3, X86_EXCLUDE) == []


def test_compressed_stream_loads(tmp_path):
    img = mixed_image(32 * MiB, seed=14, zero=0.4)
    (tmp_path / "ram.img").write_bytes(img)
    run_encode(
        tmp_path / "ram.img",
        "--block",
        "pc.ram",
        "--machine",
        PC,
        "--compress-threads",
        "2",
        "--compress-level",
        "1",
        "-o",
        tmp_path / "s.mig",
    )
    recs = records(tmp_path / "s.mig")
    kinds = [r[1] & ~RamFlag.CONTINUE for r in recs]
    assert kinds[0] in (RamFlag.PAGE, RamFlag.ZERO)  # first page of the block: not compressed
    assert kinds.count(RamFlag.COMPRESS_PAGE) == len(img) // PAGE - zero_page_count(img) - (kinds[0] == RamFlag.PAGE)
    dump = load_and_dump(tmp_path, tmp_path / "s.mig", len(img), caps=["compress"])
    assert differing_pages(dump, img, X86_EXCLUDE) == []


def _earlier_state(src, dst, seed):
    """A plausible earlier image of the same VM: the guest's dirty region
    (1..5 MiB) partly different (older words, some pages not yet written)."""
    import shutil

    shutil.copytree(src, dst)
    ram = bytearray((dst / "pc.ram.bin").read_bytes())
    old = dirty(dirty(ram, range(256, 1280, 3), "small", seed), range(257, 1280, 50), "zero", seed + 1)
    (dst / "pc.ram.bin").write_bytes(old)


@pytest.mark.parametrize("mode", ["bulk", "iterations+xbzrle"])
def test_running_guest_round_trip(tmp_path, mode):
    """Extract a capture of a running guest, re-encode its RAM with --template,
    load it into a destination with the source's configuration, `cont`: the
    guest's dirty loop keeps printing ticks, and it did not boot again.  With
    iterations, an earlier image goes in the bulk stage and the captured RAM
    follows as XBZRLE rounds (the last one in the END section)."""
    stream = extract_sample("x86-running", tmp_path / "running.mig", tmp_path / "ram")
    if mode == "bulk":
        run_encode(tmp_path / "ram", "--template", stream, "-o", tmp_path / "re.mig")
    else:
        _earlier_state(tmp_path / "ram", tmp_path / "t0", 1)
        _earlier_state(tmp_path / "ram", tmp_path / "t1", 3)
        run_encode(
            tmp_path / "t0",
            "--then",
            tmp_path / "t1",
            "--then",
            tmp_path / "ram",
            "--xbzrle-cache",
            "4M",
            "--template",
            stream,
            "-o",
            tmp_path / "re.mig",
        )
        kinds = {(r[0], r[1] & ~RamFlag.CONTINUE) for r in records(tmp_path / "re.mig")}
        assert ("END", RamFlag.XBZRLE) in kinds and ("PART", RamFlag.PAGE) in kinds
    guest = SAMPLES / "guest" / "guest.img"
    with x86_destination(tmp_path, "rt", ["-drive", f"file={guest},format=raw,if=ide,snapshot=on"]) as vm:
        vm.load_stream(tmp_path / "re.mig")
        mem = vm.pmemsave(0, 32 * MiB, tmp_path / "rt.dump")
        assert differing_pages(mem, (tmp_path / "ram" / "pc.ram.bin").read_bytes(), X86_EXCLUDE) == []
        text = vm.resume()
        assert vm.status() == "running"
    ticks = [int(t, 16) for t in re.findall(r"migstream guest tick ([0-9A-Fa-f]{8})", text)]
    assert ticks, f"no tick on the destination's serial: {text!r}"
    assert "ready" not in text  # resumed, not rebooted


def test_record_sequence_equals_qemu_bulk_stage(tmp_path):
    """A paused VM whose pc.ram is an image: QEMU 7.2's RAM records for it equal
    the ones our bulk stage emits, section boundaries aside."""
    img = mixed_image(32 * MiB, seed=15, zero=0.5)
    (tmp_path / "ram.img").write_bytes(img)
    need(QEMU_X86)
    args = ["-M", "pc", "-m", "32M", *image_ram_args(tmp_path / "ram.img", 32 * MiB), "-S"]
    with Vm(QEMU_X86, args, tmp_path, "src") as vm:
        vm.migrate_to_file(tmp_path / "qemu.mig")
    theirs = [r[1:] for r in records(tmp_path / "qemu.mig")]
    # pc.ram alone, encoded from the image file itself:
    run_encode(tmp_path / "ram.img", "--block", "pc.ram", "--machine", PC, "-o", tmp_path / "ours-ram.mig")
    ours = [r[1:] for r in records(tmp_path / "ours-ram.mig")]
    their_ram = [r for r in theirs if r[1] == "pc.ram"]
    assert len(their_ram) == len(img) // PAGE
    assert ours == their_ram
    # Every block (firmware and ACPI too), from QEMU's stream extracted:
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "extract", str(tmp_path / "qemu.mig"), "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    run_encode(tmp_path / "x", "-o", tmp_path / "ours-all.mig")
    assert [r[1:] for r in records(tmp_path / "ours-all.mig")] == theirs


def test_aarch64_stream_with_target_page_bits_loads(tmp_path):
    """aarch64 virt: the configuration carries target-page-bits (12); RAM based at 1 GiB."""
    binary = "qemu-system-aarch64"
    need(binary)
    img = mixed_image(64 * MiB, seed=16, zero=0.6)
    (tmp_path / "ram.img").write_bytes(img)
    run_encode(tmp_path / "ram.img", "--block", "mach-virt.ram", "--machine", "virt-7.2", "-o", tmp_path / "s.mig")
    dec = StreamDecoder()
    dec.feed((tmp_path / "s.mig").read_bytes())
    dec.feed(b"")
    list(dec)
    assert dec.configuration.target_page_bits == 12
    with Vm(binary, ["-M", "virt", "-cpu", "max", "-m", "64M", "-S", "-incoming", "defer"], tmp_path, "a64") as vm:
        vm.load_stream(tmp_path / "s.mig")
        dump = vm.pmemsave(0x40000000, len(img), tmp_path / "a64.dump")
    assert differing_pages(dump, img) == []


def test_alpha_8k_page_stream_loads(tmp_path):
    """alpha clipper has 8 KiB target pages.  QEMU 7.2 cannot save such a VM (the
    source dies right after the RAM setup section, like sparc64 sun4u), but it
    loads the stream we generate: every 8 KiB page lands where it belongs."""
    binary = "qemu-system-alpha"
    need(binary)
    img = mixed_image(64 * MiB, seed=17, zero=0.5)
    (tmp_path / "ram.img").write_bytes(img)
    run_encode(tmp_path / "ram.img", "--block", "ram", "--machine", "clipper", "-o", tmp_path / "s.mig")
    recs = records(tmp_path / "s.mig")
    assert len(recs) == len(img) // 8192
    assert all(r[3] % 8192 == 0 for r in recs) and any(r[3] % 16384 == 8192 for r in recs)
    with Vm(binary, ["-M", "clipper", "-m", "64M", "-S", "-incoming", "defer"], tmp_path, "alpha") as vm:
        vm.load_stream(tmp_path / "s.mig")
        dump = vm.pmemsave(0, len(img), tmp_path / "alpha.dump")
    assert differing_pages(dump, img, page=8192) == []


def test_compressed_records_equal_qemu_modulo_thread_order(tmp_path):
    """Same paused image-backed VM migrated by QEMU 7.2 with the compress capability
    (2 threads, level 1): QEMU's compression threads may reorder records inside a
    round, so compare the multiset of records (kind, block, offset, payload: the
    zlib bytes themselves) and the uncompressed first page of every block."""
    img = mixed_image(32 * MiB, seed=18, zero=0.5)
    (tmp_path / "ram.img").write_bytes(img)
    need(QEMU_X86)
    args = ["-M", "pc", "-m", "32M", *image_ram_args(tmp_path / "ram.img", 32 * MiB), "-S"]
    with Vm(QEMU_X86, args, tmp_path, "csrc") as vm:
        vm.cmd("migrate-set-capabilities", capabilities=[{"capability": "compress", "state": True}])
        vm.cmd("migrate-set-parameters", **{"compress-threads": 2, "compress-level": 1})
        vm.migrate_to_file(tmp_path / "qemu.mig")
    theirs = [r[1:] for r in records(tmp_path / "qemu.mig")]
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "extract", str(tmp_path / "qemu.mig"), "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    run_encode(tmp_path / "x", "--compress-threads", "2", "--compress-level", "1", "-o", tmp_path / "ours.mig")
    ours = [r[1:] for r in records(tmp_path / "ours.mig")]
    assert any(r[0] & ~RamFlag.CONTINUE == RamFlag.COMPRESS_PAGE for r in theirs)
    assert sorted(ours) == sorted(theirs)
    named = lambda recs: [r for r in recs if not r[0] & RamFlag.CONTINUE]  # noqa: E731
    assert named(ours) == named(theirs)


def test_ppc64_template_with_iterative_htab_section_loads(tmp_path):
    """ppc64 pseries: the capture's own spapr/htab START/PART/END sections (another
    live handler) and device state wrap our RAM; memory equals the source's
    pmemsave from when the capture was made (samples truth)."""
    binary = "qemu-system-ppc64"
    need(binary)
    sample = sample_by_name("ppc64-pseries")
    stream = extract_sample("ppc64-pseries", tmp_path / "t.mig", tmp_path / "x")
    run_encode(tmp_path / "x", "--template", stream, "-o", tmp_path / "e.mig")
    dec = StreamDecoder()
    dec.feed((tmp_path / "e.mig").read_bytes())
    dec.feed(b"")
    sections = [(e.type.name, e.idstr) for e in dec if isinstance(e, SectionStart) and e.type != SectionType.FULL]
    assert sections == [
        ("START", "ram"),
        ("START", "spapr/htab"),
        ("PART", "spapr/htab"),
        ("PART", "ram"),
        ("END", "ram"),
        ("END", "spapr/htab"),
    ]
    truth = read_zst(SAMPLES / sample["truth"][0]["file"])
    with Vm(binary, ["-M", "pseries", "-m", "256M", "-S", "-incoming", "defer"], tmp_path, "ppc") as vm:
        vm.load_stream(tmp_path / "e.mig")
        dump = vm.pmemsave(0, len(truth), tmp_path / "ppc.dump")
    assert differing_pages(dump, truth) == []
