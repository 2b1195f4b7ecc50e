"""The encoder engine and `migstream encode` without QEMU: stream structure,
fast path against the grammar's builders, accounting against QEMU's own
query-migrate counters of the committed captures, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from migstream import BytesSink
from migstream import FdSink
from migstream import MemoryImage
from migstream import PageRecord
from migstream import PageRun
from migstream import RamBlockList
from migstream import SectionStart
from migstream import StreamDecoder
from migstream import encode_stream
from migstream.errors import UsageError
from migstream.image.ramimage import RamImage
from migstream.wire import build as w
from migstream.wire.grammar import RamFlag
from migstream.wire.grammar import SectionType
from support.images import PAGE
from support.images import dirty
from support.images import mixed_image
from support.samples import raw_stream
from support.samples import sample_by_name

PC = "pc-i440fx-7.2"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream.cli", *map(str, args)], capture_output=True, text=True)


def decode(data: bytes):
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    return dec, list(dec)


def page_records(events):
    out = []
    for ev in events:
        if isinstance(ev, PageRun):
            out += list(ev.records())
        elif isinstance(ev, PageRecord):
            out.append(ev)
    return out


def encode_arrays(blocks, *later, **kw):
    images = [MemoryImage.from_arrays(PC, blocks)]
    for blk in later:
        images.append(MemoryImage.from_arrays(PC, blk))
    sink = BytesSink()
    stats = encode_stream(images, sink, **kw)
    return sink.getvalue(), stats


def apply_all(data: bytes, tmp_path) -> dict:
    """Decode a stream into block files with the project's RamImage (ram_load semantics)."""
    dec, events = decode(data)
    img = RamImage(str(tmp_path / "dec"), 4096)
    for ev in events:
        img.apply(ev)
    man = img.close(machine=None, complete=True)
    return {b["name"]: (tmp_path / "dec" / b["file"]).read_bytes() for b in man["blocks"]}


# --- structure ---------------------------------------------------------------------------


def test_stream_structure_and_grammar_builders():
    ram = np.zeros(8 * PAGE, np.uint8)
    ram[PAGE : 2 * PAGE] = 7
    rom = np.full(2 * PAGE, 0xAA, np.uint8)
    data, stats = encode_arrays([("pc.ram", ram), ("pc.rom", rom)])
    sid = 2
    # Built with the grammar's reference builders, record by record:
    expect = (
        w.file_header()
        + w.configuration(PC)
        + w.section_start(sid, "ram")
        + w.mem_size([("pc.ram", 8 * PAGE), ("pc.rom", 2 * PAGE)])
        + w.ram_record(RamFlag.EOS)
        + w.footer(sid)
        + w.section_part(sid)
        + w.ram_record(RamFlag.ZERO, 0, block="pc.ram", payload={"fill": 0})
        + w.ram_record(RamFlag.PAGE, PAGE, payload={"data": bytes([7]) * PAGE})
        + b"".join(w.ram_record(RamFlag.ZERO, i * PAGE, payload={"fill": 0}) for i in range(2, 8))
        + w.ram_record(RamFlag.PAGE, 0, block="pc.rom", payload={"data": b"\xaa" * PAGE})
        + w.ram_record(RamFlag.PAGE, PAGE, payload={"data": b"\xaa" * PAGE})
        + w.ram_record(RamFlag.EOS)
        + w.footer(sid)
        + w.section_part(sid, end=True)
        + w.ram_record(RamFlag.EOS)
        + w.footer(sid)
        + w.eof()
    )
    assert data == expect
    assert stats.duplicate == 7 and stats.normal == 3
    assert stats.dirty_sync_count == 2


def test_fast_path_batches_match_builders(monkeypatch):
    """Batch boundaries (and the numpy header path) do not change the bytes."""
    import migstream.encode.encoder as enc

    img = np.frombuffer(bytes(mixed_image(300 * PAGE, seed=3)), np.uint8)
    ref, _ = encode_arrays([("pc.ram", img)])
    monkeypatch.setattr(enc, "BATCH_PAGES", 7)
    small, _ = encode_arrays([("pc.ram", img)])
    assert small == ref
    _, events = decode(ref)
    recs = page_records(events)
    for r in recs:
        page = img[r.addr : r.addr + PAGE].tobytes()
        if r.kind == RamFlag.ZERO:
            assert page == bytes(PAGE) and r.fill == 0
        else:
            assert r.kind == RamFlag.PAGE and bytes(r.data) == page


def test_accounting_equals_qemu_counters_of_stopped_capture(tmp_path):
    """Re-encoding the RAM of QEMU's x86-stopped capture gives the same records and
    the same query-migrate counters QEMU reported for it."""
    sample = sample_by_name("x86-stopped")
    stream = tmp_path / "s.mig"
    stream.write_bytes(raw_stream(sample))
    assert cli("extract", stream, "-o", tmp_path / "x").returncode == 0
    r = cli("encode", tmp_path / "x", "-o", tmp_path / "e.mig", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    q = sample["query_migrate"]["ram"]
    for key in ("transferred", "duplicate", "normal", "normal-bytes", "total", "dirty-sync-count"):
        assert doc["ram"][key.replace("-", "_")] == q[key], key  # QEMU's names in snake_case (docs/json.md)
    theirs = [(p.flags, p.block, p.addr, bytes(p.data), p.fill) for p in page_records(decode(stream.read_bytes())[1])]
    ours = [
        (p.flags, p.block, p.addr, bytes(p.data), p.fill)
        for p in page_records(decode((tmp_path / "e.mig").read_bytes())[1])
    ]
    assert ours == theirs

    # The RAM START section (MEM_SIZE listing every block, EOS, footer) is byte-identical.
    def start_section(data):
        evs = decode(data)[1]
        starts = [e.offset for e in evs if isinstance(e, SectionStart)]
        return data[starts[0] : starts[1]]

    assert start_section((tmp_path / "e.mig").read_bytes()) == start_section(stream.read_bytes())


# --- iterations, XBZRLE, compression (checked by decoding with the project's loader) -----


def test_iterations_send_only_differing_pages(tmp_path):
    a = np.frombuffer(bytes(mixed_image(64 * PAGE, seed=4)), np.uint8)
    b = np.frombuffer(bytes(dirty(bytearray(a), [3, 9, 40], "small", 1)), np.uint8)
    c = np.frombuffer(bytes(dirty(dirty(bytearray(b), [9], "zero", 2), [50], "random", 3)), np.uint8)
    data, stats = encode_arrays([("pc.ram", a)], [("pc.ram", b)], [("pc.ram", c)], final_in_end=False)
    _, events = decode(data)
    section = None
    per_section = {}
    for ev in events:
        if isinstance(ev, SectionStart):
            section = len(per_section)
            per_section[section] = (ev.type, [])
        elif isinstance(ev, (PageRecord, PageRun)):
            per_section[section][1].extend(r.addr // PAGE for r in page_records([ev]))
    kinds = [t for t, _ in per_section.values()]
    assert kinds == [SectionType.START, SectionType.PART, SectionType.PART, SectionType.PART, SectionType.END]
    assert per_section[2][1] == [3, 9, 40]
    assert sorted(per_section[3][1]) == [9, 50]
    assert per_section[4][1] == []
    assert stats.dirty_sync_count == 4
    assert apply_all(data, tmp_path)["pc.ram"] == c.tobytes()


def test_xbzrle_rounds_decode_to_last_image(tmp_path):
    base = bytearray(mixed_image(128 * PAGE, seed=5, zero=0.2))
    imgs = [base]
    for k in range(1, 5):
        imgs.append(dirty(imgs[-1], range(10, 60), "small", k))
    imgs[3] = dirty(imgs[3], range(10, 20), "random", 9)  # overflow
    imgs[4] = dirty(imgs[4], range(20, 25), "zero", 10)
    arrs = [[("pc.ram", np.frombuffer(bytes(x), np.uint8))] for x in imgs]
    data, stats = encode_arrays(*arrs, xbzrle_cache_size=64 * PAGE)
    _, events = decode(data)
    kinds = [r.kind for r in page_records(events)]
    assert kinds.count(RamFlag.XBZRLE) == stats.xbzrle_records > 0
    assert stats.xbzrle_overflow >= 10
    assert stats.xbzrle_cache_miss >= 50  # the first round after the bulk stage
    assert apply_all(data, tmp_path)["pc.ram"] == bytes(imgs[-1])


def test_xbzrle_last_stage_does_not_update_cache():
    """In the END section a hit is encoded against the cache but the cache keeps
    its content: the same delta twice in END would be encoded identically."""
    from migstream.encode.encoder import Encoder

    a = np.zeros(4 * PAGE, np.uint8)
    a[:] = 1
    b = a.copy()
    b[5] = 9
    c = b.copy()
    c[6] = 9
    imgs = [MemoryImage.from_arrays(PC, [("pc.ram", x)]) for x in (a, b, c, c)]
    enc = Encoder(BytesSink(), imgs[0], xbzrle_cache_size=4 * PAGE)
    enc.start()
    enc.send_bulk(imgs[0])
    enc.send_iteration(imgs[1])  # miss: PAGE + insert
    enc.send_iteration(imgs[2])  # hit: XBZRLE, cache := c
    assert enc.stats.xbzrle_records == 1
    cached = bytes(enc.cache.get(0))
    assert cached == c[:PAGE].tobytes()
    enc.last_stage = True
    d = c.copy()
    d[7] = 9
    enc._destination = imgs[2]
    enc.complete(MemoryImage.from_arrays(PC, [("pc.ram", d)]))
    assert bytes(enc.cache.get(0)) == cached  # not updated in the last stage
    assert enc.stats.xbzrle_records == 2


def test_compressed_stream_decodes(tmp_path):
    img = np.frombuffer(bytes(mixed_image(200 * PAGE, seed=6, zero=0.3)), np.uint8)
    rom = np.frombuffer(bytes(mixed_image(8 * PAGE, seed=7, zero=0.0)), np.uint8)
    data, stats = encode_arrays([("pc.ram", img), ("pc.rom", rom)], compress_threads=2, compress_level=1)
    recs = page_records(decode(data)[1])
    firsts = [r for r in recs if not r.flags & RamFlag.CONTINUE]
    assert [r.block for r in firsts] == ["pc.ram", "pc.rom"]
    assert all(r.kind in (RamFlag.PAGE, RamFlag.ZERO) for r in firsts)
    assert stats.compression_pages == sum(r.kind == RamFlag.COMPRESS_PAGE for r in recs) > 0
    out = apply_all(data, tmp_path)
    assert out["pc.ram"] == img.tobytes() and out["pc.rom"] == rom.tobytes()


# --- templates ----------------------------------------------------------------------------


def test_template_keeps_device_sections_and_vmdescription(tmp_path):
    sample = sample_by_name("x86-running")
    stream = tmp_path / "t.mig"
    stream.write_bytes(raw_stream(sample))
    assert cli("extract", stream, "-o", tmp_path / "x").returncode == 0
    r = cli("encode", tmp_path / "x", "--template", stream, "-o", tmp_path / "e.mig")
    assert r.returncode == 0, r.stderr
    orig = stream.read_bytes()
    new = (tmp_path / "e.mig").read_bytes()
    # Everything after the RAM END (device FULL sections, EOF, VMDESCRIPTION) is
    # byte-identical: find the first device section in both.
    marker = b"\x04\x00\x00\x00\x00\x05timer"
    assert orig[orig.index(marker) :] == new[new.index(marker) :]
    dec, events = decode(new)
    assert dec.configuration.machine == "pc-i440fx-7.2"
    ram_ids = {e.section_id for e in events if isinstance(e, SectionStart) and e.idstr == "ram"}
    assert ram_ids == {2}


# --- CLI: bad input -------------------------------------------------------------------------


@pytest.fixture
def good_dir(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    (d / "pc.ram.bin").write_bytes(bytes(mixed_image(16 * PAGE, seed=8)))
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "page_size": 4096,
                "machine": PC,
                "complete": True,
                "blocks": [{"name": "pc.ram", "length": 16 * PAGE, "file": "pc.ram.bin"}],
            }
        )
    )
    return d


def _bad(tmp_path, *args, code=2, says=""):
    out = tmp_path / "out.mig"
    r = cli("encode", *args, "-o", out)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert says in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "out.mig.tmp").exists()
    return r


def test_good_dir_encodes(good_dir, tmp_path):
    r = cli("encode", good_dir, "-o", tmp_path / "ok.mig")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ok.mig").exists() and not (tmp_path / "ok.mig.tmp").exists()


def test_block_file_length_differs(good_dir, tmp_path):
    with open(good_dir / "pc.ram.bin", "ab") as f:
        f.write(b"x")
    _bad(tmp_path, good_dir, says="pc.ram.bin is 65537 bytes, the manifest says 65536")


def test_missing_block_file(good_dir, tmp_path):
    os.unlink(good_dir / "pc.ram.bin")
    _bad(tmp_path, good_dir, says="block pc.ram")


def test_missing_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    _bad(tmp_path, tmp_path / "empty", says="no manifest.json")


def test_unknown_machine(tmp_path):
    (tmp_path / "r.img").write_bytes(bytes(4 * PAGE))
    _bad(
        tmp_path,
        tmp_path / "r.img",
        "--block",
        "pc.ram",
        "--machine",
        "frobnicator-1.0",
        says="unknown machine type 'frobnicator-1.0'",
    )


def test_machine_alias_is_refused(tmp_path):
    (tmp_path / "r.img").write_bytes(bytes(4 * PAGE))
    _bad(tmp_path, tmp_path / "r.img", "--block", "pc.ram", "--machine", "pc", says="pc-i440fx-7.2")


def test_raw_image_needs_block_and_machine(tmp_path):
    (tmp_path / "r.img").write_bytes(bytes(4 * PAGE))
    _bad(tmp_path, tmp_path / "r.img", says="give --block NAME and --machine TYPE")


def test_length_not_multiple_of_page(tmp_path):
    (tmp_path / "r.img").write_bytes(bytes(4 * PAGE + 100))
    _bad(
        tmp_path,
        tmp_path / "r.img",
        "--block",
        "pc.ram",
        "--machine",
        PC,
        says="not a multiple of the target page size",
    )


def test_block_lists_differ_between_iterations(good_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "pc.ram.bin").write_bytes(bytes(32 * PAGE))
    (other / "manifest.json").write_text(
        json.dumps(
            {
                "page_size": 4096,
                "machine": PC,
                "blocks": [{"name": "pc.ram", "length": 32 * PAGE, "file": "pc.ram.bin"}],
            }
        )
    )
    _bad(tmp_path, good_dir, "--then", other, says="RAM blocks differ from the first image's")


def test_incomplete_extraction_refused(good_dir, tmp_path):
    man = json.loads((good_dir / "manifest.json").read_text())
    man["complete"] = False
    (good_dir / "manifest.json").write_text(json.dumps(man))
    _bad(tmp_path, good_dir, says="incomplete")


def test_template_with_other_blocks_refused(good_dir, tmp_path):
    sample = sample_by_name("x86-stopped")
    (tmp_path / "t.mig").write_bytes(raw_stream(sample))
    _bad(tmp_path, good_dir, "--template", tmp_path / "t.mig", says="template RAM blocks differ")


def test_bad_xbzrle_cache_size(good_dir, tmp_path):
    _bad(tmp_path, good_dir, "--xbzrle-cache", "3000", "--then", good_dir, says="XBZRLE cache")


def test_manifest_ram_addr(good_dir, tmp_path):
    man = json.loads((good_dir / "manifest.json").read_text())
    man["blocks"][0]["ram_addr"] = 0x2000000
    (good_dir / "manifest.json").write_text(json.dumps(man))
    with MemoryImage.open(str(good_dir)) as img:
        assert img.blocks[0].ram_addr == 0x2000000
    man["blocks"][0]["ram_addr"] = 100
    (good_dir / "manifest.json").write_text(json.dumps(man))
    _bad(tmp_path, good_dir, says="not a page-aligned offset")


def test_xbzrle_cache_larger_than_ram_refused(good_dir, tmp_path):
    _bad(tmp_path, good_dir, "--xbzrle-cache", "1T", "--then", good_dir, says="more than twice the guest's RAM")


def test_no_final_in_end_keeps_end_empty(good_dir, tmp_path):
    later = tmp_path / "later"
    later.mkdir()
    data = bytearray((good_dir / "pc.ram.bin").read_bytes())
    data[5 * PAGE] ^= 0xFF
    (later / "pc.ram.bin").write_bytes(data)
    (later / "manifest.json").write_text((good_dir / "manifest.json").read_text())
    for flag, end_pages in (("--final-in-end", 1), ("--no-final-in-end", 0)):
        out = tmp_path / f"{flag}.mig"
        r = cli("encode", good_dir, "--then", later, flag, "-o", out)
        assert r.returncode == 0, r.stderr
        section = None
        counts = {}
        for ev in decode(out.read_bytes())[1]:
            if isinstance(ev, SectionStart):
                section = ev.type
            for _rec in page_records([ev]):
                counts[section] = counts.get(section, 0) + 1
        assert counts.get(SectionType.END, 0) == end_pages


def test_failure_midway_leaves_no_output(good_dir, tmp_path, monkeypatch):
    """An error after bytes were written removes OUT.tmp and never creates OUT."""
    from typer.testing import CliRunner

    import migstream.encode.encoder as enc
    from migstream.cli import app

    def boom(self, *a, **k):
        raise UsageError("disk on fire")

    monkeypatch.setattr(enc.Encoder, "complete", boom)
    res = CliRunner().invoke(app, ["encode", str(good_dir), "-o", str(tmp_path / "out.mig")])
    assert res.exit_code == 2
    assert not (tmp_path / "out.mig").exists() and not (tmp_path / "out.mig.tmp").exists()


def encode_through_fd_sink(good_dir, path) -> bytes:
    """The image at ``good_dir`` encoded in this process into a file at ``path`` through
    an FdSink (two writer threads, one batch in flight: many concurrent writes)."""
    with open(path, "wb") as f:
        sink = FdSink(f.fileno(), threads=2, in_flight=1)
        with MemoryImage.open(str(good_dir)) as img:
            encode_stream([img], sink)
        sink.close()
    return path.read_bytes()


def test_file_output_equals_pipe_output(good_dir, tmp_path, monkeypatch):
    """Regular files are written by parallel pwritev at precomputed offsets, pipes
    in order: the bytes are the same (small batches: many concurrent writes)."""
    import migstream.encode.encoder as enc

    monkeypatch.setattr(enc, "BATCH_PAGES", 3)
    r = cli("encode", good_dir, "-o", tmp_path / "f.mig")
    assert r.returncode == 0, r.stderr
    p = subprocess.run([sys.executable, "-m", "migstream.cli", "encode", str(good_dir), "-o", "-"], capture_output=True)
    assert p.returncode == 0
    assert (tmp_path / "f.mig").read_bytes() == p.stdout
    assert encode_through_fd_sink(good_dir, tmp_path / "g.mig") == p.stdout
    # Appending to a file (`>> file`): in order, after what was there.
    (tmp_path / "h.mig").write_bytes(b"x")
    with open(tmp_path / "h.mig", "ab") as f:
        q = subprocess.run([sys.executable, "-m", "migstream.cli", "encode", str(good_dir), "-o", "-"], stdout=f)
    assert q.returncode == 0
    assert (tmp_path / "h.mig").read_bytes() == b"x" + p.stdout


@pytest.mark.parametrize("name", ["x86-stopped", "x86-q35", "aarch64-virt", "ppc64-pseries", "s390x-ccw"])
def test_header_and_configuration_equal_qemus(name):
    """File header + configuration section (with target-page-bits on aarch64) are
    the bytes QEMU 7.2 wrote in the captures."""
    sample = sample_by_name(name)
    capture = raw_stream(sample)
    dec = StreamDecoder()
    dec.feed(capture)
    dec.feed(b"")
    events = list(dec)
    ram_start = next(e.offset for e in events if isinstance(e, SectionStart))
    data, _ = encode_arrays_for(sample["machine_type_in_stream"])
    assert data[:ram_start] == capture[:ram_start]


def encode_arrays_for(machine):
    sink = BytesSink()
    stats = encode_stream([MemoryImage.from_arrays(machine, [("ram", np.zeros(PAGE, np.uint8))])], sink)
    return sink.getvalue(), stats


def test_xbzrle_rounds_reproduce_qemu_capture():
    """A QEMU 7.2 capture whose RAM was written only through qtest, between dirty
    syncs, with every kind of XBZRLE delta (samples/make_samples.py xbzrle-deltas,
    x86-xbzrle-deltas).  Split QEMU's page records into rounds (a round ends where
    the page order wraps around), take each round's pages as the dirty set and the
    destination's memory after it as the image, and run the engine: it must choose
    the same record for every page (PAGE on a cache miss, XBZRLE on a hit, PAGE on
    overflow, ZERO for zero pages) with the same bytes, and count QEMU's
    xbzrle bytes, cache-miss and overflow.  QEMU's ``pages`` is larger by the
    dirty-but-unchanged pages it skipped, which leave no record.

    Not done for x86-xbzrle-aging (16-slot cache): there the cache age of a page
    is the sync count when QEMU sends it, and QEMU resumes its page search
    mid-RAM after a sync, so its syncs do not fall on the wrap-arounds that end
    our rounds (each iteration is one whole pass)."""
    from migstream.encode.encoder import Encoder

    sample = sample_by_name("x86-xbzrle-deltas")
    data = raw_stream(sample)
    dec, events = decode(data)
    blocks = next(e for e in events if isinstance(e, RamBlockList)).blocks
    order = {b.name: i for i, b in enumerate(blocks)}
    theirs = [(r.flags, r.block, r.addr, bytes(r.data), r.fill) for r in page_records(events)]
    rounds, prev = [[]], None
    for rec in theirs:
        key = (order[rec[1]], rec[2])
        if prev is not None and key <= prev:
            rounds.append([])
        rounds[-1].append(rec)
        prev = key
    assert len(rounds) > 10
    # The destination's memory after each round, applied with ram_load semantics.
    from migstream.codecs.xbzrle import xbzrle_decode_into

    mem = {b.name: np.zeros(b.used_length, np.uint8) for b in blocks}
    images, dirty_sets = [], []
    for rd in rounds:
        dirty = {}
        for flags, blk, addr, payload, fill in rd:
            kind = flags & ~RamFlag.CONTINUE
            page = mem[blk][addr : addr + PAGE]
            if kind == RamFlag.PAGE:
                page[:] = np.frombuffer(payload, np.uint8)
            elif kind == RamFlag.ZERO:
                page[:] = fill
            else:
                buf = bytearray(page.tobytes())
                xbzrle_decode_into(payload, buf)
                page[:] = np.frombuffer(bytes(buf), np.uint8)
            dirty.setdefault(blk, []).append(addr // PAGE)
        images.append(MemoryImage.from_arrays(PC, [(b.name, mem[b.name].copy()) for b in blocks]))
        dirty_sets.append(dirty)
    cache = sample["parameters"]["xbzrle-cache-size"]
    sink = BytesSink()
    enc = Encoder(sink, images[0], xbzrle_cache_size=cache)
    enc.start()
    enc.send_bulk(images[0])
    for img, dirty in zip(images[1:], dirty_sets[1:]):
        enc.send_iteration(img, dirty)
    enc.complete()
    ours = [(p.flags, p.block, p.addr, bytes(p.data), p.fill) for p in page_records(decode(sink.getvalue())[1])]
    assert len(ours) == len(theirs)
    mismatch = [(i, a[:3], b[:3]) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert mismatch == []
    q = sample["query_migrate"]["xbzrle-cache"]
    mine = enc.stats.as_dict()["xbzrle_cache"]
    for key in ("bytes", "cache-miss", "overflow"):
        assert mine[key.replace("-", "_")] == q[key], key
    assert 0 < mine["pages"] <= q["pages"]


@pytest.mark.parametrize("supported", [True, False])
def test_preallocated_file_output_equals_pipe_output(good_dir, tmp_path, monkeypatch, supported):
    """A regular file's batches are fallocate()d before they are written (every batch
    here: PREALLOCATE_MIN 1 byte); where the file system cannot, it says so once and
    plain writes follow. Either way the bytes are the pipe's, and nothing is left past
    the stream's end."""
    import migstream.encode.encoder as enc
    import migstream.encode.sinks as sinks
    from migstream.wire import fastpath

    if fastpath.preallocate is None:
        pytest.skip("built without the C extension: no preallocation to test")
    monkeypatch.setattr(enc, "BATCH_PAGES", 3)
    monkeypatch.setattr(sinks, "PREALLOCATE_MIN", 1)
    calls = []

    def counted(fd, off, n):
        calls.append((off, n))
        return fastpath.preallocate(fd, off, n) if supported else False

    monkeypatch.setattr(sinks, "preallocate", counted)
    p = subprocess.run([sys.executable, "-m", "migstream.cli", "encode", str(good_dir), "-o", "-"], capture_output=True)
    assert encode_through_fd_sink(good_dir, tmp_path / "g.mig") == p.stdout
    assert len(calls) > 3 if supported else len(calls) == 1
    if supported:  # the ranges follow each other: each batch's own
        assert all(a[0] + a[1] == b[0] for a, b in zip(calls, calls[1:]))
