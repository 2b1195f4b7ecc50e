"""The TUI's record filter and search (migstream/tools/filtering.py), without Textual:
the rows they pick against the plain-construct reference decoder's records."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from migstream.tools.filtering import FilterError
from migstream.tools.filtering import RowFilter
from migstream.tools.filtering import filtered_rows
from migstream.tools.filtering import next_match
from migstream.tools.filtering import parse_filter
from migstream.tools.filtering import search_kind
from migstream.tools.index import StreamIndex
from migstream.wire.grammar import RamFlag
from support.reference import reference_records
from support.streams import mixed_stream

CONT = int(RamFlag.CONTINUE)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    data, _ = mixed_stream(seed=3, iterations=3)
    path = tmp_path_factory.mktemp("filtering") / "mixed.mig"
    path.write_bytes(data)
    ix = StreamIndex(str(path))
    for _ in ix.scan(budget=0.01):
        pass
    yield ix, reference_records(data)
    ix.close()


def offsets(ix, rows) -> list[int]:
    r = ix.rows()
    return [int(r.offset[i]) for i in rows]


def ram_offsets(ref, keep) -> list[int]:
    """Offsets of the reference's RAM records (offset, flags, block, addr, _) that ``keep`` accepts."""
    return [x[0] for x in ref if isinstance(x[0], int) and keep(x)]


def test_the_filter_module_needs_no_textual():
    code = "import sys, migstream.tools.filtering; print(any(m.split('.')[0] == 'textual' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_filter_shows_every_row(mixed):
    ix, _ = mixed
    assert filtered_rows(ix, RowFilter()) is None
    assert filtered_rows(ix, parse_filter("", ix)) is None


@pytest.mark.parametrize("word,kind", [("xbzrle", RamFlag.XBZRLE), ("zero", RamFlag.ZERO), ("raw", RamFlag.PAGE)])
def test_kind_filter_keeps_the_records_of_that_kind(mixed, word, kind):
    ix, ref = mixed
    rows = filtered_rows(ix, parse_filter(word, ix))
    want = ram_offsets(ref, lambda x: x[1] & ~CONT == kind)
    assert want and offsets(ix, rows) == want


def test_continue_and_markers(mixed):
    ix, ref = mixed
    assert offsets(ix, filtered_rows(ix, parse_filter("continue", ix))) == ram_offsets(ref, lambda x: x[1] & CONT)
    eos = [x[1] for x in ref if x[0] == "marker" and x[2] == RamFlag.EOS]
    assert eos and offsets(ix, filtered_rows(ix, parse_filter("eos", ix))) == eos


def test_kinds_and_block_combine(mixed):
    ix, ref = mixed
    f = parse_filter("xbzrle zero block:vga.vram", ix)
    assert f.kinds == {int(RamFlag.XBZRLE), int(RamFlag.ZERO)} and ix.blocks[f.block].name == "vga.vram"
    want = ram_offsets(ref, lambda x: x[1] & ~CONT in (RamFlag.XBZRLE, RamFlag.ZERO) and x[2] == "vga.vram")
    assert want and offsets(ix, filtered_rows(ix, f)) == want
    assert f.describe(ix) == "zero xbzrle block:vga.vram"


def test_iteration_filter_keeps_one_ram_section(mixed):
    ix, ref = mixed
    # The reference in sections: the second RAM section is iteration 1.
    sections, current = [], None
    for x in ref:
        if x[0] == "section":
            current = [x[1]]
            sections.append(current)
        elif isinstance(x[0], int) and current is not None:
            current.append(x[0])
        elif x[0] == "marker" and current is not None:
            current.append(x[1])
    assert offsets(ix, filtered_rows(ix, parse_filter("iter:1", ix))) == sections[1]
    assert len(filtered_rows(ix, parse_filter(f"iter:{len(sections)}", ix))) == 0  # no such iteration


@pytest.mark.parametrize("spec,message", [("nonsense", "cannot filter on"), ("block:nope", "no RAM block 'nope'")])
def test_bad_filters_say_why(mixed, spec, message):
    ix, _ = mixed
    with pytest.raises(FilterError, match=message):
        parse_filter(spec, ix)


def test_search_walks_the_matches_both_ways(mixed):
    ix, ref = mixed
    kind = search_kind("XBZRLE")
    assert kind == RamFlag.XBZRLE
    forward, row = [], -1
    while (row := next_match(ix, kind, row, 1)) is not None:
        forward.append(row)
    want = ram_offsets(ref, lambda x: x[1] & ~CONT == RamFlag.XBZRLE)
    assert offsets(ix, forward) == want
    backward, row = [], ix.count
    while (row := next_match(ix, kind, row, -1)) is not None:
        backward.append(row)
    assert backward == forward[::-1]
    with pytest.raises(FilterError, match="unknown flag 'bogus'"):
        search_kind("bogus")
    assert np.all(np.diff(forward) > 0)


# --- records --filter: the same language over the records as they stream -----------------

RECORDS_FILTERS = [
    "xbzrle",
    "zero block:pc.ram",
    "raw iter:1",
    "xbzrle zero iter:3",
    "eos",
    "continue offset:0x1000-0x40000",
    "zero offset:0x2000- offset:0x100-0x800",
]


@pytest.fixture(scope="module")
def xbzrle_sample(tmp_path_factory):
    from support.samples import ROOT
    from support.samples import read_zst
    from support.samples import sample_by_name

    path = tmp_path_factory.mktemp("records-filter") / "x.mig"
    path.write_bytes(read_zst(ROOT / "samples" / sample_by_name("x86-xbzrle")["stream"]))
    ix = StreamIndex(str(path))
    for _ in ix.scan(budget=0.01):
        pass
    yield path, ix
    ix.close()


@pytest.mark.parametrize("spec", RECORDS_FILTERS)
def test_records_filter_picks_what_the_tui_filter_picks(xbzrle_sample, spec):
    import json

    from typer.testing import CliRunner

    from migstream.cli import app

    path, ix = xbzrle_sample
    r = CliRunner().invoke(app, ["records", "--json", "--filter", spec, str(path)])
    assert r.exit_code == 0, r.stderr
    got = [json.loads(line)["offset"] for line in r.stdout.splitlines()]
    want = offsets(ix, filtered_rows(ix, parse_filter(spec, ix)))
    assert got == want and got, spec
    n = min(3, len(got))
    r = CliRunner().invoke(app, ["records", "--json", "-f", spec, "-c", str(n), str(path)])
    assert [json.loads(line)["offset"] for line in r.stdout.splitlines()] == got[:n]


@pytest.mark.parametrize("spec", ["nonsense", "offset:zz-", "offset:0x20-0x10", "iter:x"])
def test_records_filter_refuses_what_it_cannot_use(xbzrle_sample, spec):
    from typer.testing import CliRunner

    from migstream.cli import app

    path, _ = xbzrle_sample
    r = CliRunner().invoke(app, ["records", "--filter", spec, str(path)])
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.startswith("error: --filter: "), r.stderr
