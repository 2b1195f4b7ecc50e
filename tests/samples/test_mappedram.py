"""Mapped-ram files (QEMU 10.0 file: migration, with and without multifd).

Byte-exact extraction of both samples is in test_samples.py (file, compressed file and
stdin).  Here: holes are not used, random access, header faults.  Header positions in
the altered files are found here from the layout (MEM_SIZE block entry: u8 len, name,
be64 used_length, then the 28-byte header), not from the decoder.
"""

import struct
import subprocess
import sys

import pytest

from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.decode.mappedram import MappedRamFile
from migstream.decode.mappedram import written_runs
from migstream.errors import StreamError
from migstream.errors import TruncatedStream
from migstream.events import MappedRamBlock
from migstream.events import MappedRamPages
from migstream.tools.extract import extract
from migstream.wire import grammar as g
from support.samples import SAMPLES
from support.samples import compare_truth
from support.samples import read_zst
from support.samples import sample_by_name

NAMES = ["q10-mapped-ram", "q10-mapped-ram-multifd"]


def pc_ram_header(data: bytes):
    """(offset of the header, used_length, version, page_size, bitmap_offset, pages_offset)."""
    at = data.index(b"\x06pc.ram") + 7
    (used,) = struct.unpack_from(">Q", data, at)
    return (at + 8, used) + struct.unpack_from(">IQQQ", data, at + 8)


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mapped")
    out = {}
    for name in NAMES:
        p = d / f"{name}.mig"
        p.write_bytes(read_zst(SAMPLES / sample_by_name(name)["stream"]))
        out[name] = p
    return out


def events(path):
    with StreamSource(str(path)) as src:
        dec = open_decoder(src)
        return list(iter_events(src, dec))


@pytest.mark.parametrize("name", NAMES)
def test_header_and_bitmap_as_qemu_wrote_them(name, raw_files):
    data = raw_files[name].read_bytes()
    at, used, version, ps, bitmap_offset, pages_offset = pc_ram_header(data)
    evs = events(raw_files[name])
    blk = next(e for e in evs if type(e) is MappedRamBlock and e.name == "pc.ram")
    assert (blk.used_length, blk.version, blk.page_size) == (used, 1, 4096)
    assert (blk.bitmap_offset, blk.pages_offset) == (bitmap_offset, pages_offset)
    # QEMU's rules: bitmap right after the header, pages 1 MiB aligned after it.
    assert bitmap_offset == at + 28
    assert pages_offset % g.MAPPED_RAM_FILE_OFFSET_ALIGNMENT == 0
    size = g.mapped_ram_bitmap_size(used, ps)
    assert blk.bitmap == data[bitmap_offset : bitmap_offset + size]
    # The construct declaration reads the same header.
    hdr = g.MappedRamHeader.parse(data[at : at + 28])
    assert (hdr.bitmap_offset, hdr.pages_offset) == (bitmap_offset, pages_offset)
    # Every page with a clear bit is zero in the truth (QEMU never writes zero pages).
    truth = read_zst(SAMPLES / "x86-image.ram.zst")
    set_pages = {p for first, n in written_runs(blk.bitmap, 0, used // ps) for p in range(first, first + n)}
    zero = bytes(ps)
    for p in range(0, used // ps, 7):
        if p not in set_pages:
            assert truth[p * ps : (p + 1) * ps] == zero


@pytest.mark.parametrize("name", NAMES)
def test_holes_are_not_used(name, raw_files, tmp_path):
    """Fill every hole of the pc.ram region with 0xAA: the result must not change."""
    data = bytearray(raw_files[name].read_bytes())
    at, used, _v, ps, bitmap_offset, pages_offset = pc_ram_header(data)
    bitmap = bytes(data[bitmap_offset : bitmap_offset + g.mapped_ram_bitmap_size(used, ps)])
    holes = 0
    for p in range(used // ps):
        if not bitmap[p // 8] >> (p % 8) & 1:
            data[pages_offset + p * ps : pages_offset + (p + 1) * ps] = b"\xaa" * ps
            holes += 1
    assert holes > 5000
    path = tmp_path / "garbage.mig"
    path.write_bytes(data)
    result = extract(str(path), str(tmp_path / "out"))
    assert result.error is None
    compare_truth(sample_by_name(name), tmp_path / "out")


def test_region_views_are_page_aligned_and_cover_the_region(raw_files):
    evs = events(raw_files["q10-mapped-ram"])
    pieces = [e for e in evs if type(e) is MappedRamPages and e.block == "pc.ram"]
    assert pieces[0].addr == 0
    pos = 0
    for p in pieces:
        assert p.addr == pos and p.addr % 4096 == 0 and len(p.data) % 4096 == 0
        pos += len(p.data)
    assert pos == 32 << 20


def test_random_access(raw_files):
    evs = events(raw_files["q10-mapped-ram"])
    blocks = [e for e in evs if type(e) is MappedRamBlock]
    truth = read_zst(SAMPLES / "x86-image.ram.zst")
    with MappedRamFile(str(raw_files["q10-mapped-ram"]), blocks) as f:
        assert f.page("pc.ram", 0) is None  # the first MiB is zero: a hole
        for addr in (0x101000, 0x102000, 0x17F000):
            assert f.page("pc.ram", addr) == truth[addr : addr + 4096]


def test_stdin_streaming_matches(raw_files, tmp_path):
    """A pipe cannot seek: the regions stream by and the same pages come out."""
    with open(raw_files["q10-mapped-ram-multifd"], "rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "migstream.cli", "extract", "-", "-o", str(tmp_path)],
            stdin=f,
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    compare_truth(sample_by_name("q10-mapped-ram-multifd"), tmp_path)


def altered(raw_files, tmp_path, change):
    data = bytearray(raw_files["q10-mapped-ram"].read_bytes())
    at = pc_ram_header(data)[0]
    change(data, at)
    p = tmp_path / "bad.mig"
    p.write_bytes(data)
    return p, at


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda d, at: struct.pack_into(">I", d, at, 2),
            "Migration mapped-ram capability version not supported (expected <= 1, got 2)",
        ),
        (
            lambda d, at: struct.pack_into(">Q", d, at + 20, 0x100800),
            "Error reading ramblock pc.ram pages, region has bad alignment (0x100800)",
        ),
        (lambda d, at: struct.pack_into(">Q", d, at + 12, 0x10), "lies before the end of its header"),
        (
            lambda d, at: struct.pack_into(">Q", d, at + 4, 8192),
            "mapped-ram header page size 8192, target page size 4096",
        ),
    ],
)
def test_bad_headers(raw_files, tmp_path, change, message):
    path, at = altered(raw_files, tmp_path, change)
    with pytest.raises(StreamError) as info:
        events(path)
    assert message in info.value.message
    assert info.value.offset == at - 15  # the block entry: u8 len + "pc.ram" + be64
    assert info.value.block == "pc.ram"


def test_bitmap_runs_into_pages(raw_files, tmp_path):
    path, at = altered(raw_files, tmp_path, lambda d, at: struct.pack_into(">Q", d, at + 12, 0x100000 - 100))
    with pytest.raises(StreamError, match="runs into the page region"):
        events(path)


def test_truncated_region(raw_files, tmp_path):
    data = raw_files["q10-mapped-ram"].read_bytes()
    _at, _used, _v, _ps, _bo, pages_offset = pc_ram_header(data)
    path = tmp_path / "cut.mig"
    path.write_bytes(data[: pages_offset + (5 << 20) + 123])
    with pytest.raises(TruncatedStream, match="inside a mapped-ram page region") as info:
        events(path)
    assert info.value.block == "pc.ram"
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "mapped-ram page region" in proc.stderr and "Traceback" not in proc.stderr


def test_huge_block_length_does_not_allocate(raw_files, tmp_path):
    # used_length 2^62 for pc.ram: rejected before any bitmap is read.
    path, at = altered(raw_files, tmp_path, lambda d, at: struct.pack_into(">Q", d, at - 8, 1 << 62))
    with pytest.raises(StreamError, match="more than MEM_SIZE announced|implausibly large"):
        events(path)


def test_pages_offset_far_beyond_the_file(raw_files, tmp_path):
    # A hostile pages_offset (2^60, aligned) is skipped towards, not allocated: the
    # file simply ends first.
    path, at = altered(raw_files, tmp_path, lambda d, at: struct.pack_into(">Q", d, at + 20, 1 << 60))
    with pytest.raises(TruncatedStream, match="inside a mapped-ram page region"):
        events(path)
