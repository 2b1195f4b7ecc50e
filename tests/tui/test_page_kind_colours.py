"""One colour per page kind: the TUI's widgets and the HTML report paint each kind
in the colour of tools/vocabulary.py's table, and say its word."""

from __future__ import annotations

import re

from migstream.tools.report import PALETTE
from migstream.tools.report import collect
from migstream.tools.report import render
from migstream.tools.vocabulary import PAGE_KINDS
from migstream.tools.vocabulary import PageKind
from migstream.tools.vocabulary import page_kind_rgb
from migstream.tui.app import MigstreamApp
from migstream.tui.pagemap import STATE_CLASSES
from migstream.tui.pagemap import Legend
from migstream.tui.pagemap import PageMap
from migstream.tui.timeline import BlockList
from migstream.tui.timeline import Timeline
from support.samples import SAMPLES

XBZRLE = SAMPLES / "x86-xbzrle.mig.zst"


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_the_table_has_one_distinct_colour_and_word_per_kind():
    assert list(PAGE_KINDS) == list(PageKind)
    assert len({w.colour for w in PAGE_KINDS.values()}) == len(PageKind)
    assert len({w.word for w in PAGE_KINDS.values()}) == len(PageKind)
    assert all(len(w.short) <= 7 for w in PAGE_KINDS.values())  # the TUI's enc column
    assert all(re.fullmatch(r"#[0-9a-f]{6}", w.colour) for w in PAGE_KINDS.values())


def test_report_colours_and_words_are_the_table():
    assert PALETTE == tuple(rgb(PAGE_KINDS[k].colour) for k in PageKind)
    page = render(collect(str(XBZRLE)))
    legend = re.search(r"<div class='legend'>(.*?)</div>", page).group(1)
    shown = re.findall(r"<i style='background:(#[0-9a-f]{6})'></i>([^<]+)</span>", legend)
    assert shown == [(PAGE_KINDS[k].colour, PAGE_KINDS[k].word) for k in PageKind]


async def test_tui_colours_are_the_table():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for widget in (PageMap, Legend, Timeline, BlockList):
            w = app.query_one(widget)
            for kind in PageKind:
                colour = w.get_component_rich_style(STATE_CLASSES[kind]).color
                assert colour is not None, (widget, kind)
                assert colour.get_truecolor() == page_kind_rgb(kind), (widget.__name__, kind.name)
    app.index.close()
