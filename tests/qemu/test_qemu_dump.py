"""``migstream dump`` against real QEMU 7.2: guests with known pages at chosen
guest-physical addresses (written through qtest into a paused VM; untouched RAM
costs nothing), migrated to a stream; the stream's ELF, LiME and raw images must hold
every byte of RAM where QEMU's own ``dump-guest-memory`` (paging off) has it, with
the same RAM ranges (nothing in a hole), and Volatility 3's Elf64Layer and LimeLayer
must read the known pages back.  Then the other way: QEMU's dump of a guest encoded
around that guest's saved stream loads into QEMU with the same RAM."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from migstream.containers.physimage import ELF64_HEADER
from migstream.containers.physimage import ELF64_PHDR
from migstream.containers.physimage import PT_LOAD
from migstream.containers.physimage import PhysicalImage
from migstream.image.physwriter import data_extents
from tests.support.qemu import Vm
from tests.support.qemu import differing_pages
from tests.support.qemu import require_qemu
from tests.support.qtest import QTest
from tests.support.qtest import qtest_args

pytestmark = pytest.mark.qemu

GiB = 1 << 30
PAGE = 4096
#: x86: 0xA0000-0xFFFFF reads through VGA MMIO and the ROM aliases (pc.rom, isa-bios),
#: not pc.ram: QEMU's dump shows the ROMs there, the stream's pc.ram its own pages.
X86_WINDOW = (0xA0000, 0x100000)


def _backend(bid: str, size: int, path: Path) -> list[str]:
    """Anonymous RAM: pages never written are the kernel's shared zero page, so a
    paused multi-GiB guest costs no memory and migrates in about a second (a sparse
    file backend costs a page-cache page for each page QEMU reads: 40 s for 5 GiB
    here).  ``path`` is unused; kept for a file backend on machines that need one."""
    return ["-object", f"memory-backend-ram,id={bid},size={size}"]


def _case(name: str, tmp: Path):
    """(binary, args, known GPAs) of each guest: the first and last pages of each RAM
    range and a few inside, on both sides of every hole."""
    if name.startswith("pc-"):
        size = int(name[3:-1]) * GiB  # pc-5G: 3 GiB low (gigabyte_align), the rest at 4 GiB
        args = ["-M", "pc,memory-backend=pc.ram", "-m", f"{size >> 30}G", *_backend("pc.ram", size, tmp / "ram")]
        return "qemu-system-x86_64", args, [0x1000, 0x7FF000, 0xBFFFF000, 0x100000000, 4 * GiB + size - 3 * GiB - PAGE]
    if name.startswith("q35-"):
        size = int(name[4:-1]) * GiB  # q35-5G: 2 GiB low, the rest at 4 GiB
        args = ["-M", "q35,memory-backend=pc.ram", "-m", f"{size >> 30}G", *_backend("pc.ram", size, tmp / "ram")]
        return "qemu-system-x86_64", args, [0x2000, 0x7FFFF000, 0x100000000, 4 * GiB + size - 2 * GiB - PAGE]
    if name == "numa-2x2G":
        args = [
            "-M", "pc", "-m", "4G", "-smp", "2",
            *_backend("m0", 2 * GiB, tmp / "m0"), *_backend("m1", 2 * GiB, tmp / "m1"),
            "-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=1,memdev=m1",
        ]  # fmt: skip
        # m0 at 0-2G; m1 straddles the hole: 2G-3G, then 4G-5G
        return "qemu-system-x86_64", args, [0x3000, 0x7FFFF000, 0x80000000, 0xBFFFF000, 0x100000000, 0x13FFFF000]
    if name == "numa-q35-2x1.5G":
        half = 3 * GiB // 2
        args = [
            "-M", "q35", "-m", "3G", "-smp", "2",
            *_backend("m0", half, tmp / "m0"), *_backend("m1", half, tmp / "m1"),
            "-numa", "node,nodeid=0,memdev=m0", "-numa", "node,nodeid=1,memdev=m1",
        ]  # fmt: skip
        # m0 at 0-1.5G; m1 straddles the hole: 1.5G-2G, then 4G-5G
        return "qemu-system-x86_64", args, [0x3000, half - PAGE, half, 0x7FFFF000, 0x100000000, 0x13FFFF000]
    if name.startswith("virt-"):
        size = int(name[5:-1]) * GiB
        args = [
            "-M", "virt,memory-backend=mach-virt.ram", "-cpu", "max", "-m", f"{size >> 30}G",
            *_backend("mach-virt.ram", size, tmp / "ram"),
        ]  # fmt: skip
        return "qemu-system-aarch64", args, [0x40000000, 0x40123000, GiB + size - PAGE]
    raise AssertionError(name)


def _page(gpa: int) -> bytes:
    """A page no other page equals: its GPA repeated, plus a marker."""
    return (b"migstream dump %016x " % gpa * 200)[:PAGE]


def _qemu_dump(vm: Vm, fifo: Path) -> tuple[list[tuple[int, int]], dict[int, bytes]]:
    """QEMU's dump-guest-memory (paging off) read through a FIFO, never stored:
    (PT_LOAD (gpa, size) ranges, {gpa: page} of its non-zero pages)."""
    os.mkfifo(fifo)
    out: dict = {}

    def reader():
        with open(fifo, "rb", buffering=0) as f:
            try:
                fcntl.fcntl(f.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups
            except OSError:
                pass
            pos = 0
            buf = bytearray(1 << 20)

            def read(n):
                nonlocal pos
                view = memoryview(buf)[:n] if n <= len(buf) else memoryview(bytearray(n))
                got = 0
                while got < n:
                    k = f.readinto(view[got:])
                    if not k:
                        raise EOFError(pos)
                    got += k
                pos += n
                return view

            hsize = struct.calcsize("<" + ELF64_HEADER)
            head = bytes(read(hsize))
            assert head[4] == 2, "QEMU wrote ELFCLASS32"
            h = struct.unpack("<" + ELF64_HEADER, head)
            phoff, phentsize, phnum = h[5], h[9], h[10]
            read(phoff - pos)  # (the header is 64 bytes: never more than one buffer)
            table = bytes(read(phentsize * phnum))
            loads = []
            for i in range(phnum):
                p = struct.unpack_from("<" + ELF64_PHDR, table, i * phentsize)
                if p[0] == PT_LOAD and p[6]:
                    loads.append((p[2], p[4], p[5], p[6]))  # offset, paddr, filesz, memsz
            zero = bytes(1 << 20)
            pages = {}
            for offset, paddr, filesz, memsz in sorted(loads):
                assert filesz == memsz
                while pos < offset:
                    read(min(offset - pos, len(buf)))
                done = 0
                while done < filesz:
                    chunk = read(min(1 << 20, filesz - done))
                    if chunk != zero[: len(chunk)]:
                        for k in range(0, len(chunk), PAGE):
                            if chunk[k : k + PAGE] != zero[:PAGE]:
                                pages[paddr + done + k] = bytes(chunk[k : k + PAGE])
                    done += len(chunk)
            out["ranges"] = sorted((paddr, memsz) for _, paddr, _, memsz in loads)
            out["pages"] = pages
            f.read()

    t = threading.Thread(target=reader)
    t.start()
    vm.cmd("dump-guest-memory", paging=False, protocol=f"file:{fifo}")
    t.join(300)
    assert "ranges" in out, "reading QEMU's dump failed"
    return out["ranges"], out["pages"]


def _union(ranges, cut=None) -> list[tuple[int, int]]:
    """Sorted, merged [lo, hi) intervals of (gpa, size) ranges, minus ``cut``."""
    iv = sorted((g, g + s) for g, s in ranges)
    merged: list[list[int]] = []
    for lo, hi in iv:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        if cut and lo < cut[1] and hi > cut[0]:
            if lo < cut[0]:
                out.append((lo, cut[0]))
            if hi > cut[1]:
                out.append((cut[1], hi))
        else:
            out.append((lo, hi))
    return out


#: The issue's sizes (pc and q35 with 5 GiB, aarch64 virt with 2 GiB) take about three
#: minutes on this shared 2-vCPU machine; the default run keeps one guest of each kind
#: at the smallest size that still splits around the PCI hole (pc 4 GiB: 3 + 1,
#: q35 3 GiB: 2 + 1; NUMA on q35 with two 1.5 GiB memdevs, the second straddling).
#: MIGSTREAM_DUMP_FULL=1 runs the full sizes.
CASES = (
    ["pc-5G", "q35-5G", "numa-2x2G", "virt-2G"]
    if os.environ.get("MIGSTREAM_DUMP_FULL")
    else ["pc-4G", "q35-3G", "numa-q35-2x1.5G", "virt-1G"]
)


@pytest.fixture(scope="module", params=CASES)
def guest(request, tmp_path_factory):
    """A migrated guest: stream, QEMU's dump truth and the known pages."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    binary, args, known = _case(name, tmp)
    require_qemu(binary)
    qt = str(tmp / "qtest.sock")
    with Vm(binary, [*args, *qtest_args(qt)], tmp, "src", timeout=60) as vm:
        q = QTest(qt)
        try:
            for gpa in known:
                q.write(gpa, _page(gpa))
        finally:
            q.close()
        stream = tmp / "guest.mig"
        vm.migrate_to_file(stream, timeout=300)
        ranges, pages = _qemu_dump(vm, tmp / "dump.fifo")
    window = X86_WINDOW if binary.endswith("x86_64") else None
    return dict(name=name, tmp=tmp, stream=stream, known=known, ranges=ranges, pages=pages, window=window)


def _dumped(guest: dict, fmt: str) -> Path:
    """The guest's stream through ``migstream dump --format fmt`` (once per format)."""
    out = guest["tmp"] / f"guest.{fmt}"
    if not out.exists():
        _dump(guest["stream"], out, fmt)
    return out


def _dump(stream: Path, out: Path, fmt: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "migstream", "dump", str(stream), "-o", str(out), "--format", fmt],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def _in(gpa: int, window) -> bool:
    return window is not None and window[0] <= gpa < window[1]


@pytest.mark.parametrize("fmt", ["elf", "raw", "lime"])
def test_dump_matches_qemu(guest, fmt):
    out = _dumped(guest, fmt)
    window = guest["window"]
    truth = guest["pages"]
    with PhysicalImage(str(out)) as img:
        assert img.kind == fmt
        if fmt == "raw":
            ours = None  # a raw image has one range from 0: RAM ranges are checked on ELF and LiME
        else:
            ours = [(r.gpa, r.memsz) for r in img.ranges]
            # Every RAM range QEMU dumps, and nothing else (nothing in a hole).
            assert _union(ours, window) == _union(guest["ranges"], window)
        # Every non-zero page QEMU has, at its GPA.
        for gpa, page in truth.items():
            if not _in(gpa, window):
                assert img.read(gpa, PAGE) == page, f"GPA 0x{gpa:x}"
        # Every page our image stores data for equals QEMU's (zero where QEMU's is zero).
        seen = 0
        for r in img.ranges:
            for lo, hi in data_extents(img.fd, r.file_offset, r.file_offset + r.filesz):
                g_lo, g_hi = r.gpa + lo - r.file_offset, r.gpa + hi - r.file_offset
                for gpa in range(g_lo - g_lo % PAGE, g_hi, PAGE):
                    if _in(gpa, window):
                        continue
                    seen += 1
                    assert img.read(gpa, PAGE) == truth.get(gpa, bytes(PAGE)), f"GPA 0x{gpa:x}"
        assert seen >= len(guest["known"])
        # The file is sparse: far smaller than the guest.
        assert os.stat(out).st_blocks * 512 < 64 << 20
        for gpa in guest["known"]:
            assert img.read(gpa, PAGE) == _page(gpa)


def _volatility_layer(path: Path, kind: str):
    from volatility3.framework import contexts
    from volatility3.framework.layers.elf import Elf64Layer
    from volatility3.framework.layers.lime import LimeLayer
    from volatility3.framework.layers.physical import FileLayer

    ctx = contexts.Context()
    ctx.config["base.location"] = path.resolve().as_uri()
    ctx.add_layer(FileLayer(ctx, "base", "base"))
    ctx.config["top.base_layer"] = "base"
    layer = (Elf64Layer if kind == "elf" else LimeLayer)(ctx, "top", "top")
    ctx.add_layer(layer)
    return layer


@pytest.mark.parametrize("fmt", ["elf", "lime"])
def test_volatility_reads_known_pages(guest, fmt):
    out = _dumped(guest, fmt)
    layer = _volatility_layer(out, fmt)
    for gpa in guest["known"]:
        assert layer.read(gpa, PAGE) == _page(gpa), f"Volatility {fmt} GPA 0x{gpa:x}"


def test_encode_qemu_dump_with_template(tmp_path):
    """QEMU's own dump-guest-memory of a paused pc guest (ELFCLASS32: no long mode,
    all RAM below 4 GiB), encoded around the stream saved from that guest before
    its RAM changed, loads into QEMU 7.2 with the dump's RAM, not the template's."""
    require_qemu("qemu-system-x86_64")
    size = 256 << 20
    args = ["-M", "pc,memory-backend=pc.ram", "-m", "256M", *_backend("pc.ram", size, tmp_path / "ram")]
    qt = str(tmp_path / "qtest.sock")
    before = [0x1000, 0x200000, 0xFFFF000]
    after = [0x300000, 0x7654000, 0x1000]  # 0x1000 is rewritten
    with Vm("qemu-system-x86_64", [*args, *qtest_args(qt)], tmp_path, "src", timeout=60) as vm:
        q = QTest(qt)
        try:
            for gpa in before:
                q.write(gpa, _page(gpa))
            template = tmp_path / "template.mig"
            vm.migrate_to_file(template, timeout=120)
            for gpa in after:
                q.write(gpa, _page(gpa ^ 0xABC000))
        finally:
            q.close()
        core = tmp_path / "qemu.elf"
        vm.cmd("dump-guest-memory", paging=False, protocol=f"file:{core}")
        truth = vm.pmemsave(0, size, tmp_path / "truth.bin")
    out = tmp_path / "from-core.mig"
    r = subprocess.run(
        [sys.executable, "-m", "migstream", "encode", str(core), "--template", str(template), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    with Vm("qemu-system-x86_64", [*args, "-S", "-incoming", "defer"], tmp_path, "dst", timeout=60) as dst:
        dst.load_stream(out)
        loaded = dst.pmemsave(0, size, tmp_path / "loaded.bin")
    assert truth[0x300000 : 0x300000 + PAGE] == _page(0x300000 ^ 0xABC000)
    assert differing_pages(truth, loaded, exclude=[X86_WINDOW]) == []
