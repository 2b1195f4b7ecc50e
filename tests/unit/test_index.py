"""StreamIndex: rows, page state as of any row, read-back, against independent
references (the plain-construct decoder in reference.py, the guest RAM dumps of
the real QEMU samples, naive replays written here)."""

from __future__ import annotations

import numpy as np
import pytest

from migstream.codecs.xbzrle import xbzrle_decode_into
from migstream.codecs.zlibpage import inflate_page
from migstream.tools.index import RowKind
from migstream.tools.index import StreamIndex
from migstream.tools.index import xbzrle_runs
from migstream.tools.vocabulary import PageKind
from migstream.wire.grammar import RamFlag
from support.reference import reference_records
from support.samples import SAMPLES
from support.samples import load_samples
from support.samples import read_zst
from support.samples import sample_by_name
from support.streams import PS
from support.streams import mixed_stream

CONT = int(RamFlag.CONTINUE)
STATE = {
    int(RamFlag.ZERO): PageKind.ZERO,
    int(RamFlag.PAGE): PageKind.RAW,
    int(RamFlag.XBZRLE): PageKind.XBZRLE,
    int(RamFlag.COMPRESS_PAGE): PageKind.COMPRESSED,
}


def build(path, **kw) -> StreamIndex:
    ix = StreamIndex(str(path), **kw)
    for _ in ix.scan(budget=0.01):
        pass
    return ix


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    data, blocks = mixed_stream(seed=7, iterations=4)
    path = tmp_path_factory.mktemp("mixed") / "mixed.mig"
    path.write_bytes(data)
    return path, data, blocks


def test_rows_match_reference_decoder(mixed):
    path, data, _ = mixed
    ix = build(path)
    assert ix.complete and ix.error is None
    ref = reference_records(data)
    r = ix.rows()
    # Every RAM page record of the reference, in order, at the same offsets.
    ref_pages = [x for x in ref if isinstance(x[0], int)]
    page_rows = np.flatnonzero(r.kind == RowKind.PAGE)
    assert len(page_rows) == len(ref_pages)
    for row, (off, flags, block, addr, _) in zip(page_rows, ref_pages):
        assert int(r.offset[row]) == off
        assert int(r.flags[row]) == flags
        assert ix.blocks[int(r.block[row])].name == block
        assert int(r.page[row]) * PS == addr
    # Sections and markers too.
    assert [int(r.offset[i]) for i in np.flatnonzero(r.kind == RowKind.SECTION)] == [
        x[1] for x in ref if x[0] == "section"
    ]
    assert [int(r.offset[i]) for i in np.flatnonzero(r.kind == RowKind.MARKER)] == [
        x[1] for x in ref if x[0] == "marker"
    ]
    assert len(ix.ram_sections) == 5  # START + 4 PART/END


def naive_states(ref, blocks, upto_page_records: int) -> dict:
    state = {name: [PageKind.NEVER] * (length // PS) for name, length in blocks}
    for _off, flags, block, addr, _ in [x for x in ref if isinstance(x[0], int)][:upto_page_records]:
        state[block][addr // PS] = STATE[flags & ~CONT]
    return state


@pytest.mark.parametrize("checkpoint_rows", [5, 64, None])
def test_page_states_equal_naive_replay(mixed, checkpoint_rows):
    path, data, blocks = mixed
    ix = build(path, checkpoint_rows=checkpoint_rows)
    ref = reference_records(data)
    r = ix.rows()
    page_rows = np.flatnonzero(r.kind == RowKind.PAGE)
    for k in [0, 1, 7, 60, 61, 100, len(page_rows) // 2, len(page_rows) - 1, len(page_rows)]:
        row = int(page_rows[k - 1]) if k else -1
        got = ix.page_states(row)
        want = naive_states(ref, blocks, k)
        for name, states in want.items():
            blk = ix.block_named(name)
            assert got[blk.base : blk.base + blk.pages].tolist() == [int(s) for s in states], (name, k)


def test_page_content_replays_xbzrle_and_compressed_pages(mixed):
    path, data, blocks = mixed
    ix = build(path)
    ref = [x for x in reference_records(data) if isinstance(x[0], int)]
    r = ix.rows()
    page_rows = np.flatnonzero(r.kind == RowKind.PAGE)
    pages: dict = {}
    for row, (_off, flags, block, addr, value) in zip(page_rows, ref):
        key = (block, addr)
        before = bytes(pages.get(key, bytes(PS)))
        kind = flags & ~CONT
        page = bytearray(before)
        if kind == RamFlag.PAGE:
            page[:] = value
        elif kind == RamFlag.ZERO:
            page[:] = bytes([value]) * PS
        elif kind == RamFlag.COMPRESS_PAGE:
            page[:] = inflate_page(value, PS)
        else:
            xbzrle_decode_into(value, page)
        pages[key] = bytes(page)
        if kind in (RamFlag.XBZRLE, RamFlag.COMPRESS_PAGE):
            assert ix.page_content(int(row), before=True) == before
            assert ix.page_content(int(row)) == pages[key]


def test_detail_reads_records_back(mixed):
    path, data, _ = mixed
    ix = build(path)
    ref = [x for x in reference_records(data) if isinstance(x[0], int)]
    r = ix.rows()
    for row, (off, flags, block, addr, value) in zip(np.flatnonzero(r.kind == RowKind.PAGE), ref):
        d = ix.detail(int(row))
        assert (d.offset, d.flags, d.block, d.addr) == (off, flags, block, addr)
        kind = flags & ~CONT
        if kind == RamFlag.ZERO:
            assert d.fill == value
        else:
            assert d.payload == value
        assert data[off : off + len(d.header)] == d.header
        assert d.idstr_in_record == (not flags & CONT)


def test_xbzrle_runs():
    delta = bytes([3, 2, 0xAA, 0xBB, 10, 1, 0xCC])
    assert xbzrle_runs(delta) == [(3, 2, 2), (15, 1, 6)]


def test_rows_touching_and_row_at_offset(mixed):
    path, data, _ = mixed
    ix = build(path)
    ref = [x for x in reference_records(data) if isinstance(x[0], int)]
    want = [x[0] for x in ref if x[2] == "vga.vram" and x[3] == 5 * PS]
    blk = ix.block_named("vga.vram")
    rows = ix.rows_touching(blk.index, 5)
    assert [int(ix.rows().offset[i]) for i in rows] == want
    # An offset inside a record maps to that record's row.
    assert ix.row_at_offset(want[0] + 3) == rows[0]


def test_index_memory_is_numpy_columns(mixed):
    path, data, _ = mixed
    ix = build(path)
    r = ix.rows()
    per_row = sum(a.itemsize for a in (r.offset, r.kind, r.flags, r.block, r.page))
    assert per_row == 21


def test_corrupt_stream_keeps_rows_before_the_error(mixed, tmp_path):
    _, data, _ = mixed
    ref = [x for x in reference_records(data) if isinstance(x[0], int)]
    bad_at = ref[40][0]
    bad = bytearray(data)
    bad[bad_at + 7] |= 0x01  # FULL is set: an unknown flag combination
    path = tmp_path / "bad.mig"
    path.write_bytes(bytes(bad))
    ix = build(path)
    assert ix.complete and ix.error is not None
    assert ix.error.offset == bad_at
    assert int(ix.rows().offset[-1]) < bad_at
    assert np.count_nonzero(ix.rows().kind == RowKind.PAGE) == 40


# --- real QEMU samples ---------------------------------------------------------------

SAMPLE_NAMES = [s["name"] for s in load_samples()]


@pytest.mark.parametrize("name", ["x86-xbzrle", "x86-compress", "x86-postcopy", "aarch64-virt"])
def test_final_page_map_matches_guest_ram(name, raw_sample_dir):
    """At the end of the stream, every page of a truth-dumped block that is marked
    zero is all-zero in the guest's RAM, and every page read back from its last
    record equals the guest's RAM (spot-checked), outside pmemsave's blind windows."""
    sample = sample_by_name(name)
    ix = build(raw_sample_dir / f"{name}.mig")
    assert ix.error is None and ix.eof
    states = ix.page_states(ix.count - 1)
    rnd = np.random.default_rng(0)
    for truth in sample["truth"]:
        want = read_zst(SAMPLES / truth["file"])
        blk = ix.block_named(truth["block"])
        blind = [(lo // PS, -(-hi // PS)) for lo, hi in truth["exclude"]]
        first = truth["block_offset"] // PS
        n = truth["length"] // PS
        st = states[blk.base + first : blk.base + first + n]
        assert not np.any(st == PageKind.NEVER), "precopy sends every page at least once"
        visible = [p for p in range(n) if not any(lo <= p < hi for lo, hi in blind)]
        zero_pages = [p for p in visible if st[p] == PageKind.ZERO]
        for p in zero_pages:
            assert want[p * PS : (p + 1) * PS] == bytes(PS), f"page {p} marked zero"
        # Pages whose last record is XBZRLE or compressed, plus a random spread.
        special = [p for p in visible if st[p] in (PageKind.XBZRLE, PageKind.COMPRESSED)]
        spread = rnd.choice(visible, size=min(64, len(visible)), replace=False).tolist()
        for p in sorted(set(special[:200] + spread)):
            rows = ix.rows_touching(blk.index, first + p)
            assert len(rows)
            got = ix.page_content(int(rows[-1]))
            assert got == want[p * PS : (p + 1) * PS], f"{name}: {truth['block']} page {p}"


def test_compressed_sample_is_spooled_and_equals_plain(raw_sample_dir):
    plain = build(raw_sample_dir / "x86-xbzrle.mig")
    spooled = build(SAMPLES / "x86-xbzrle.mig.zst")
    assert spooled.spooled and not plain.spooled
    a, b = plain.rows(), spooled.rows()
    assert a.count == b.count
    for col in ("offset", "kind", "flags", "block", "page"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    row = int(np.flatnonzero(a.flags & int(RamFlag.XBZRLE))[0])
    assert spooled.detail(row).payload == plain.detail(row).payload
    plain.close()
    spooled.close()


def test_sample_iterations_and_block_counts(raw_sample_dir):
    """Counts agree with `migstream info` figures for the xbzrle capture."""
    ix = build(raw_sample_dir / "x86-xbzrle.mig")
    pc = ix.block_named("pc.ram")
    assert pc.sent[PageKind.XBZRLE] == 87
    assert pc.sent[PageKind.ZERO] == 6144
    assert pc.sent[PageKind.RAW] == 2920
    ram = [ix.sections[i] for i in ix.ram_sections]
    assert [s.type.name for s in ram] == ["START"] + ["PART"] * 6 + ["END"]
    assert sum(int(s.pages[PageKind.XBZRLE]) for s in ram) == 87


def test_hostile_block_size_gets_no_page_map(tmp_path):
    from migstream.wire import build as w

    huge = 1 << 49  # 512 TiB: the decoder accepts it (below its 1 PiB limit)
    data = (
        w.file_header()
        + w.section_start(2, "ram", 0, 4)
        + w.mem_size([("pc.ram", 64 * PS), ("big", huge)])
        + w.ram_record(RamFlag.EOS)
        + w.footer(2)
        + w.section_part(2)
        + w.ram_record(RamFlag.ZERO, huge - PS, block="big", payload={"fill": 0})
        + w.ram_record(RamFlag.ZERO, PS, block="pc.ram", payload={"fill": 0})
        + w.ram_record(RamFlag.EOS)
        + w.footer(2)
        + w.eof()
    )
    path = tmp_path / "huge.mig"
    path.write_bytes(data)
    ix = build(path)
    assert ix.error is None
    assert ix.block_named("big").pages == 0 and ix.total_pages == 64
    states = ix.page_states(ix.count - 1)
    assert states[1] == PageKind.ZERO
    assert len(ix.rows_touching(ix.block_named("big").index, (huge - PS) // PS)) == 1


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_indexes(name):
    """Each committed capture (read from its compressed file, spooled) indexes
    without error, with RAM sections from START to END.  Where every page travels
    on the main channel, every page of the main RAM block was sent by the end
    (QEMU's bulk stage sends each page once); with mapped-ram, the pages the
    bitmap leaves unwritten are zero in the guest's RAM."""
    sample = sample_by_name(name)
    ix = build(SAMPLES / sample["stream"])
    assert ix.error is None and ix.eof and ix.ram_complete
    ram = [ix.sections[i].type.name for i in ix.ram_sections]
    assert ram[0] == "START" and ram[-1] == "END" and set(ram[1:-1]) <= {"PART"}
    blk = ix.block_named(sample["ram_block"])
    st = ix.page_states(ix.count - 1)[blk.base : blk.base + blk.pages]
    caps = set(sample.get("capabilities") or ())
    if not caps & {"multifd", "mapped-ram", "x-ignore-shared"}:
        assert not np.any(st == PageKind.NEVER)
    if "mapped-ram" in caps:
        truth = next(t for t in sample["truth"] if t["block"] == sample["ram_block"])
        want = read_zst(SAMPLES / truth["file"])
        first = truth["block_offset"] // PS
        unwritten = np.flatnonzero(st[first : first + truth["length"] // PS] == PageKind.NEVER)
        assert 0 < len(unwritten) < blk.pages
        for p in unwritten:
            assert want[p * PS : (p + 1) * PS] == bytes(PS), f"unwritten page {p} is not zero"
    ix.close()


MULTIFD_SAMPLES = [s["name"] for s in load_samples() if s.get("channels")]


@pytest.mark.parametrize("name", MULTIFD_SAMPLES)
def test_multifd_channels_fill_the_page_map(name):
    """With its channel files, a multifd capture's pages come from the packets:
    every page of the RAM block is sent, pages that arrived as zero are zero in the
    guest's RAM, and each multifd row says which packet it came from."""
    sample = sample_by_name(name)
    channels = [SAMPLES / c["file"] for c in sample["channels"]]
    ix = build(SAMPLES / sample["stream"], channels=channels)
    assert ix.error is None and ix.eof
    blk = ix.block_named(sample["ram_block"])
    st = ix.page_states(ix.count - 1)[blk.base : blk.base + blk.pages]
    if "mapped-ram" not in (sample.get("capabilities") or ()):
        assert not np.any(st == PageKind.NEVER)
        assert np.count_nonzero(st == PageKind.MULTIFD) > 0
    truth = next(t for t in sample["truth"] if t["block"] == sample["ram_block"])
    want = read_zst(SAMPLES / truth["file"])
    first = truth["block_offset"] // PS
    blind = [(lo // PS, -(-hi // PS)) for lo, hi in truth["exclude"]]
    for p in np.flatnonzero(st[first : first + truth["length"] // PS] == PageKind.ZERO):
        if not any(lo <= p < hi for lo, hi in blind):
            assert want[p * PS : (p + 1) * PS] == bytes(PS), f"page {p} arrived as zero"
    r = ix.rows()
    row = int(np.flatnonzero(r.flags & 0x400)[0])
    first_row, n, info = ix.packet_of_row(row)
    assert first_row <= row < first_row + n and info.block == ix.blocks[int(r.block[row])].name
    assert "multifd packet" in ix.detail(row).description
    ix.close()


@pytest.mark.parametrize("name", MULTIFD_SAMPLES)
def test_multifd_page_contents_equal_guest_ram(name):
    """A page whose last record is a multifd row reads back from its channel file's
    packet (nocomp in place, zlib/zstd decoded in order) as the guest's RAM, and the
    same page read twice, out of order, is still right."""
    sample = sample_by_name(name)
    channels = [SAMPLES / c["file"] for c in sample["channels"]]
    ix = build(SAMPLES / sample["stream"], channels=channels)
    blk = ix.block_named(sample["ram_block"])
    truth = next(t for t in sample["truth"] if t["block"] == sample["ram_block"])
    want = read_zst(SAMPLES / truth["file"])
    first = truth["block_offset"] // PS
    blind = [(lo // PS, -(-hi // PS)) for lo, hi in truth["exclude"]]
    r = ix.rows()
    checked = []
    for p in range(first, first + truth["length"] // PS, 7):  # every 7th page, both orders below
        if any(lo <= p - first < hi for lo, hi in blind):
            continue
        hist = ix.rows_touching(blk.index, p)
        if len(hist) and int(r.flags[hist[-1]]) & 0x400:
            checked.append((p, int(hist[-1])))
    if not checked:
        assert "mapped-ram" in (sample.get("capabilities") or ()), "no page ends on a multifd row"
        return
    normal = 0
    for p, row in checked + checked[::-1][:50]:
        page = ix.page_content(row)
        assert page == want[(p - first) * PS : (p - first + 1) * PS], f"page {p - first} (row {row})"
        normal += bool(int(r.flags[row]) & int(RamFlag.PAGE))
    assert normal > 0
    ix.close()
