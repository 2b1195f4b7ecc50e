"""Block migration (the "block" section, migration/block.c): records parsed one by
one with the grammar, disks rebuilt by `extract`, the loader's checks."""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import tracemalloc

import pytest

from migstream.decode.decoder import StreamDecoder
from migstream.errors import StreamError
from migstream.errors import TruncatedStream
from migstream.events import BlockRecord
from migstream.events import DirtyBitmapRecord
from migstream.events import SectionEnd
from migstream.tools.extract import extract
from migstream.tools.summary import StreamSummary
from migstream.tools.template import StreamTemplate
from migstream.wire import build as w
from migstream.wire import grammar as g
from support.samples import SAMPLES
from support.samples import read_zst
from support.samples import sample_by_name

B = g.BlockFlag
CHUNK = g.BLOCK_CHUNK
SECTORS = CHUNK >> g.BLOCK_SECTOR_BITS


def stream(*parts: bytes) -> bytes:
    """File header, configuration, a RAM START (so the stream is complete), then a
    block START, the given block PART payloads (each ended by EOS), RAM END, EOF."""
    out = bytearray(w.file_header() + w.configuration("pc-i440fx-7.2"))
    out += w.section_start(1, "block", version_id=1) + w.block_record(B.EOS) + w.footer(1)
    out += w.section_start(2, "ram") + w.mem_size([("pc.ram", 16 * 4096)]) + w.ram_record(g.RamFlag.EOS) + w.footer(2)
    for payload in parts:
        out += w.section_part(1) + payload + w.block_record(B.EOS) + w.footer(1)
    out += w.section_part(2, end=True)
    for p in range(16):
        out += w.ram_record(g.RamFlag.ZERO, p * 4096, block="pc.ram" if p == 0 else None, payload={"fill": 0})
    out += w.ram_record(g.RamFlag.EOS) + w.footer(2) + w.eof()
    return bytes(out)


def events(data: bytes):
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    return list(dec)


def test_records_and_disks(tmp_path):
    rnd = random.Random(1)
    c0, c2 = rnd.randbytes(CHUNK), b"text " * (CHUNK // 5) + b"x" * (CHUNK % 5)
    data = stream(
        w.block_record(B.PROGRESS, 0)
        + w.block_record(B.DEVICE_BLOCK, 0, device="d1", data=c0)
        + w.block_record(B.DEVICE_BLOCK | B.ZERO_BLOCK, SECTORS, device="d1")
        + w.block_record(B.DEVICE_BLOCK, 2 * SECTORS, device="d1", data=c2),
        # A later iteration: chunk 0 dirtied to zeros, chunk 1 to data, another disk.
        w.block_record(B.DEVICE_BLOCK | B.ZERO_BLOCK, 0, device="d1")
        + w.block_record(B.DEVICE_BLOCK, SECTORS, device="d1", data=c0)
        + w.block_record(B.DEVICE_BLOCK, 3 * SECTORS, device="ide0-hd0", data=c2)
        + w.block_record(B.PROGRESS, 100),
    )
    evs = events(data)
    recs = [e for e in evs if isinstance(e, BlockRecord)]
    assert [(r.flags, r.device, r.disk_offset if r.is_chunk else r.value, len(r.data)) for r in recs] == [
        (B.EOS, None, 0, 0),
        (B.PROGRESS, None, 0, 0),
        (B.DEVICE_BLOCK, "d1", 0, CHUNK),
        (B.DEVICE_BLOCK | B.ZERO_BLOCK, "d1", CHUNK, 0),
        (B.DEVICE_BLOCK, "d1", 2 * CHUNK, CHUNK),
        (B.EOS, None, 0, 0),
        (B.DEVICE_BLOCK | B.ZERO_BLOCK, "d1", 0, 0),
        (B.DEVICE_BLOCK, "d1", CHUNK, CHUNK),
        (B.DEVICE_BLOCK, "ide0-hd0", 3 * CHUNK, CHUNK),
        (B.PROGRESS, None, 100, 0),
        (B.EOS, None, 0, 0),
    ]
    assert bytes(recs[2].data) == c0 and recs[2].offset == data.index(c0) - 8 - 3
    # Every block section ends with its footer.
    assert sum(isinstance(e, SectionEnd) and e.idstr == "block" for e in evs) == 3

    src = tmp_path / "s.mig"
    src.write_bytes(data)
    res = extract(str(src), str(tmp_path / "x"))
    assert res.error is None and res.manifest["complete"]
    disks = {d["device"]: d for d in res.manifest["disks"]}
    assert disks["d1"] == {"device": "d1", "file": "disk-d1.bin", "length": 3 * CHUNK, "chunks": 5, "zero_chunks": 2}
    d1 = (tmp_path / "x" / "disk-d1.bin").read_bytes()
    assert d1 == bytes(CHUNK) + c0 + c2  # chunk 0 zeroed again, chunk 1 written later
    hd = (tmp_path / "x" / "disk-ide0-hd0.bin").read_bytes()
    assert hd == bytes(3 * CHUNK) + c2
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())["disks"] == res.manifest["disks"]


def test_unknown_flags_are_rejected_with_their_offset():
    bad = w.block_record(0x10, 5)
    data = stream(w.block_record(B.PROGRESS, 1) + bad)
    at = data.index(bad)
    with pytest.raises(StreamError) as err:
        events(data)
    assert err.value.offset == at and "Unknown block migration flags: 0x10" in str(err.value)


def test_truncated_chunk():
    rec = w.block_record(B.DEVICE_BLOCK, 0, device="d1", data=bytes(CHUNK))
    data = stream(rec)
    cut = data.index(rec) + len(rec) - 100
    with pytest.raises(TruncatedStream):
        events(data[:cut])


def test_a_footer_pattern_inside_a_chunk_does_not_end_the_section():
    # The chunk holds what a guest wrote to its disk: here the bytes of this section's
    # footer followed by a section type.  Parsing records (not searching for the
    # footer) keeps the section whole.
    trap = (bytes([g.SectionType.FOOTER]) + (1).to_bytes(4, "big") + bytes([g.SectionType.PART])) * 1000
    chunk = trap + bytes(CHUNK - len(trap))
    data = stream(w.block_record(B.DEVICE_BLOCK, 0, device="d1", data=chunk))
    recs = [e for e in events(data) if isinstance(e, BlockRecord) and e.is_chunk]
    assert len(recs) == 1 and bytes(recs[0].data) == chunk


# --- the "dirty-bitmap" section (capability dirty-bitmaps) ---------------------------

D = g.DirtyBitmapFlag


def bitmap_stream(*payloads: bytes, start_eos: bool = True) -> bytes:
    """A dirty-bitmap START with the first payload, an END with the second (each
    ended by EOS), around a RAM section, as QEMU 7.2 sends them."""
    out = bytearray(w.file_header() + w.configuration("pc-i440fx-7.2"))
    out += w.section_start(2, "ram") + w.mem_size([("pc.ram", 4096)]) + w.ram_record(g.RamFlag.EOS) + w.footer(2)
    out += w.section_start(3, "dirty-bitmap", version_id=1) + payloads[0]
    out += (w.dirty_bitmap_record(D.EOS) if start_eos else b"") + w.footer(3)
    out += w.section_part(2, end=True) + w.ram_record(g.RamFlag.ZERO, 0, block="pc.ram", payload={"fill": 0})
    out += w.ram_record(g.RamFlag.EOS) + w.footer(2)
    out += w.section_part(3, end=True) + payloads[1] + w.dirty_bitmap_record(D.EOS) + w.footer(3) + w.eof()
    return bytes(out)


def test_dirty_bitmap_records():
    bits = bytes(range(32))
    data = bitmap_stream(
        w.dirty_bitmap_record(D.START, node="n1", bitmap="bm0", granularity=65536, bitmap_flags=1)
        + w.dirty_bitmap_record(D.START, bitmap="bm1", granularity=4096),
        w.dirty_bitmap_record(D.BITS, node="n1", bitmap="bm0", start_sector=0, nr_sectors=16384, data=bits)
        + w.dirty_bitmap_record(D.BITS | D.ZEROES, start_sector=16384, nr_sectors=16384)
        + w.dirty_bitmap_record(D.COMPLETE)
        + w.dirty_bitmap_record(D.BITS | D.ZEROES, bitmap="bm1", start_sector=0, nr_sectors=8),
    )
    evs = events(data)
    recs = [e for e in evs if isinstance(e, DirtyBitmapRecord)]
    assert [
        (r.flags & ~(D.DEVICE_NAME | D.BITMAP_NAME), r.node, r.bitmap, r.granularity, r.start_sector, bytes(r.data))
        for r in recs
    ] == [
        (D.START, "n1", "bm0", 65536, None, b""),
        (D.START, None, "bm1", 4096, None, b""),
        (D.EOS, None, None, None, None, b""),
        (D.BITS, "n1", "bm0", None, 0, bits),
        (D.BITS | D.ZEROES, None, None, None, 16384, b""),
        (D.COMPLETE, None, None, None, None, b""),
        (D.BITS | D.ZEROES, None, "bm1", None, 0, b""),
        (D.EOS, None, None, None, None, b""),
    ]
    summary = StreamSummary()
    for ev in evs:
        summary.add(ev)
    # Names carry over from record to record: the second bitmap is on node n1 too.
    assert summary.as_dict()["dirty_bitmaps"] == {
        "n1/bm0": {"granularity": 65536, "bitmap_flags": 1, "ranges": 2, "zero_ranges": 1, "bytes": 32},
        "n1/bm1": {"granularity": 4096, "bitmap_flags": 0, "ranges": 1, "zero_ranges": 1, "bytes": 0},
    }


@pytest.mark.parametrize("flag_bytes, consumed", [(b"\x80\x01", 2), (b"\x80\x81\x00\x01", 4)])
def test_dirty_bitmap_extra_flag_bytes(flag_bytes, consumed):
    # qemu_get_bitmap_flags reads 2 or 4 bytes when 0x80 is set and keeps the last
    # byte: here EOS, so the section ends right after them.
    data = bitmap_stream(flag_bytes, b"", start_eos=False)
    recs = [e for e in events(data) if isinstance(e, DirtyBitmapRecord)]
    at = data.index(flag_bytes + bytes([g.SectionType.FOOTER]))
    assert recs[0].offset == at and recs[0].flags == D.EOS
    # The START section's footer follows the flag bytes: all were consumed.
    assert data[at + consumed] == g.SectionType.FOOTER


def test_dirty_bitmap_loader_checks():
    bad_flags = w.dirty_bitmap_record(D.START, node="n1", bitmap="b", granularity=512, bitmap_flags=0x08)
    data = bitmap_stream(bad_flags, b"")
    with pytest.raises(StreamError) as err:
        events(data)
    assert err.value.offset == data.index(bad_flags) and "Unknown flags in migrated dirty bitmap header: 8" in str(
        err.value
    )
    huge = w.dirty_bitmap_record(D.BITS, node="n1", bitmap="b", start_sector=0, nr_sectors=8, data=bytes(10241))
    data = bitmap_stream(b"", huge)
    with pytest.raises(StreamError) as err:
        events(data)
    assert err.value.offset == data.index(huge) and "buffer allocation request is too large" in str(err.value)


def test_templates_keep_disks_out_of_memory(tmp_path):
    # x86-block's block sections hold 3 MiB of disk chunks.  Used as a template
    # (encode --template, transcode, rewrite), they are spooled to a file, not kept in
    # Python memory, and a transcode carries every block record over unchanged.
    stream = SAMPLES / sample_by_name("x86-block")["stream"]
    StreamTemplate.load(str(stream))  # imports and caches first
    tracemalloc.start()
    tpl = StreamTemplate.load(str(stream))
    gc.collect()  # the decoder's own buffers go with it
    kept, _ = tracemalloc.get_traced_memory()  # what the loaded template still holds
    tracemalloc.stop()
    held = sum(len(p) for p in tpl.before_ram + tpl.during_ram + tpl.after_ram)
    assert held > 3 * CHUNK and kept < CHUNK // 4, (held, kept)

    def block_records(data):
        return [(r.flags, r.value, r.device, bytes(r.data)) for r in events(data) if isinstance(r, BlockRecord)]

    original = read_zst(stream)
    out = tmp_path / "t.mig"
    r = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "transcode", str(stream), "-o", str(out), "--plain"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert len(block_records(original)) > 8 and block_records(out.read_bytes()) == block_records(original)
