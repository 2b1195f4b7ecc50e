"""`migstream encode --mapped-ram` (mappedram_writer.py) without running QEMU.

Ground truth is QEMU 10.0's own mapped-ram file (samples/q10-mapped-ram): the same
memory and device state written by us must give the same bytes.  Loading by real
QEMU 10 is in test_qemu_mappedram_encode.py.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.events import Configuration
from migstream.events import MappedRamBlock
from migstream.wire import grammar as g
from support.images import PAGE
from support.images import mixed_image
from support.images import zero_page_count
from support.samples import SAMPLES
from support.samples import read_zst
from support.samples import sample_by_name

MiB = 1 << 20


def ms(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def events(path):
    with StreamSource(str(path)) as src:
        return list(iter_events(src, open_decoder(src)))


def test_same_bytes_as_qemu10(tmp_path):
    """Extract QEMU 10's mapped-ram file, write it again from its memory with itself
    as the template: every byte equals QEMU's (headers, offsets, 1 MiB alignment,
    bitmaps, page regions, EOS/PART/SWITCHOVER_START/END, devices, VMDESCRIPTION)."""
    s = sample_by_name("q10-mapped-ram")
    qemu_file = tmp_path / "qemu.mig"
    qemu_file.write_bytes(read_zst(SAMPLES / s["stream"]))
    r = ms("extract", qemu_file, "-o", tmp_path / "mem")
    assert r.returncode == 0, r.stderr
    r = ms(
        "encode",
        tmp_path / "mem",
        "--mapped-ram",
        "--template",
        SAMPLES / s["stream"],
        "-o",
        tmp_path / "ours.mig",
        "--stats-json",
        tmp_path / "stats.json",
    )
    assert r.returncode == 0, r.stderr
    ours = (tmp_path / "ours.mig").read_bytes()
    theirs = qemu_file.read_bytes()
    assert len(ours) == len(theirs)
    if ours != theirs:
        at = next(i for i in range(len(ours)) if ours[i] != theirs[i])
        pytest.fail(f"first difference at 0x{at:x}")
    # The page counters equal QEMU's query-migrate for that migration.
    ram = json.loads((tmp_path / "stats.json").read_text())["ram"]
    assert (ram["normal"], ram["duplicate"]) == (
        s["query_migrate"]["ram"]["normal"],
        s["query_migrate"]["ram"]["duplicate"],
    )


def test_plain_template_gets_the_capability(tmp_path):
    """A plain QEMU 10 capture as template: its configuration is re-built with
    mapped-ram among the capabilities (the destination checks it)."""
    s = sample_by_name("q10-running")
    r = ms("extract", SAMPLES / s["stream"], "-o", tmp_path / "mem")
    assert r.returncode == 0, r.stderr
    r = ms("encode", tmp_path / "mem", "--mapped-ram", "--template", SAMPLES / s["stream"], "-o", tmp_path / "o.mig")
    assert r.returncode == 0, r.stderr
    cfg = next(e for e in events(tmp_path / "o.mig") if type(e) is Configuration)
    assert cfg.machine == "pc-i440fx-10.0" and list(cfg.capabilities) == ["mapped-ram"]
    r = ms("extract", tmp_path / "o.mig", "-o", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    for f in sorted((tmp_path / "mem").glob("*.bin")):
        assert (tmp_path / "back" / f.name).read_bytes() == f.read_bytes(), f.name


def test_sparse_and_read_back_byte_exact(tmp_path):
    """A zero-heavy image: zero pages are holes (allocated size far below the file
    size), every header follows QEMU's rules, and our decoder reads the image back."""
    img = mixed_image(32 * MiB, seed=5, zero=0.9)
    (tmp_path / "ram.img").write_bytes(img)
    r = ms(
        "encode",
        tmp_path / "ram.img",
        "--block",
        "pc.ram",
        "--machine",
        "pc-i440fx-10.0",
        "--mapped-ram",
        "-o",
        tmp_path / "s.mig",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    zeros = zero_page_count(img)
    assert doc["ram"]["duplicate"] == zeros and doc["ram"]["normal"] == len(img) // PAGE - zeros
    st = os.stat(tmp_path / "s.mig")
    nonzero_bytes = (len(img) // PAGE - zeros) * PAGE
    assert st.st_size > len(img)
    # Allocated: the written pages plus a little (headers, bitmap, device state,
    # file-system block rounding); zero pages never reach the disk.
    assert st.st_blocks * 512 < nonzero_bytes + 1 * MiB
    assert st.st_blocks * 512 < st.st_size / 4
    assert doc["mapped_ram"] == {"file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512}

    data = (tmp_path / "s.mig").read_bytes()
    blk = next(e for e in events(tmp_path / "s.mig") if type(e) is MappedRamBlock)
    # Found from the layout, not the decoder: MEM_SIZE record, u8 len + "pc.ram", be64 length, header.
    at = data.index(b"\x06pc.ram") + 7 + 8
    version, ps, bitmap_offset, pages_offset = struct.unpack_from(">IQQQ", data, at)
    assert (version, ps) == (1, PAGE)
    assert bitmap_offset == at + 28 == blk.bitmap_offset
    assert pages_offset == g.MAPPED_RAM_FILE_OFFSET_ALIGNMENT == blk.pages_offset
    # Bitmap bit i (little-endian words) is set exactly for the non-zero pages.
    bits = int.from_bytes(data[bitmap_offset : bitmap_offset + len(img) // PAGE // 8], "little")
    zero = bytes(PAGE)
    for i in range(0, len(img) // PAGE, 3):
        assert bool(bits >> i & 1) == (img[i * PAGE : (i + 1) * PAGE] != zero), i
        assert data[pages_offset + i * PAGE : pages_offset + (i + 1) * PAGE] == img[i * PAGE : (i + 1) * PAGE]
    r = ms("extract", tmp_path / "s.mig", "-o", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "pc.ram.bin").read_bytes() == img


def test_later_images_the_file_holds_the_last(tmp_path):
    """--then rounds: pages go to the same offsets; the file holds the last image,
    including pages that became zero (bit cleared), one PART per round."""
    a = mixed_image(4 * MiB, seed=1, zero=0.3)
    b = bytearray(a)
    b[0 : 8 * PAGE] = bytes(8 * PAGE)  # became zero
    b[100 * PAGE : 101 * PAGE] = b"\x42" * PAGE
    (tmp_path / "a.img").write_bytes(a)
    (tmp_path / "b.img").write_bytes(b)
    r = ms(
        "encode",
        tmp_path / "a.img",
        "--then",
        tmp_path / "b.img",
        "--block",
        "pc.ram",
        "--machine",
        "pc-i440fx-10.0",
        "--mapped-ram",
        "-o",
        tmp_path / "s.mig",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["part_sections"] == 2
    r = ms("extract", tmp_path / "s.mig", "-o", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "pc.ram.bin").read_bytes() == b


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "-"], "give a regular file with -o, not -"),
        (["-o", "{tmp}/x.mig", "--xbzrle-cache", "8M"], "mapped-ram is incompatible with xbzrle"),
        (["-o", "{tmp}/x.mig", "--compress-threads", "2"], "mapped-ram is incompatible with compression"),
    ],
)
def test_encode_refuses(tmp_path, args, message):
    (tmp_path / "ram.img").write_bytes(bytes(MiB))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = ms("encode", tmp_path / "ram.img", "--block", "pc.ram", "--machine", "pc-i440fx-10.0", "--mapped-ram", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("x.mig*"))


def test_transcode_refuses_stdout_and_plain(tmp_path):
    s = SAMPLES / sample_by_name("q10-running")["stream"]
    r = ms("transcode", s, "--mapped-ram", "-o", "-")
    assert r.returncode == 2 and "not -" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    r = ms("transcode", s, "--mapped-ram", "--plain", "-o", tmp_path / "x.mig")
    assert r.returncode == 2 and "--plain excludes --mapped-ram" in r.stderr
    assert not list(tmp_path.glob("x.mig*"))


def test_template_with_x_ignore_shared_is_refused(tmp_path):
    """x-ignore-shared changes the layout (block addresses, empty regions): not written."""
    s = sample_by_name("x86-ignore-shared")
    r = ms("extract", SAMPLES / s["stream"], "-o", tmp_path / "mem")
    assert r.returncode == 0, r.stderr
    r = ms("encode", tmp_path / "mem", "--mapped-ram", "--template", SAMPLES / s["stream"], "-o", tmp_path / "o.mig")
    assert r.returncode == 2, r.stderr
    assert "x-ignore-shared" in r.stderr and "Traceback" not in r.stderr
