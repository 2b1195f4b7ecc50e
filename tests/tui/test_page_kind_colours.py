"""One colour per page kind: the TUI's widgets and the HTML report paint each kind
in the colour of tools/vocabulary.py's table, and say its word."""

from __future__ import annotations

import re

from textual.color import Color
from textual.theme import Theme
from textual.widgets import HelpPanel

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
from migstream.tui.palette import GRAPHICS_CONTRAST
from migstream.tui.palette import TEXT_CONTRAST
from migstream.tui.palette import contrast
from migstream.tui.palette import readable
from migstream.tui.records import RecordTable
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


# --- themes: the colours are theme variables ($page-<kind>), readable on every theme -----

KINDS_SEEN = [k for k in PageKind if k != PageKind.NEVER]  # never-sent pages stay faint


def _background(app) -> Color:
    return Color.parse(app.theme_variables["page-map-background"])


def _colours(app):
    """(widget, kind) -> the colour it paints the kind in, and the record table's text."""
    cells = {
        (w.__name__, k): app.query_one(w).get_component_rich_style(STATE_CLASSES[k]).color.get_truecolor()
        for w in (PageMap, Legend, Timeline, BlockList)
        for k in PageKind
    }
    table = app.query_one(RecordTable)
    text = {k: table.get_component_rich_style(f"records--{k.name.lower()}").color.get_truecolor() for k in KINDS_SEEN}
    return cells, text


async def test_record_table_text_is_the_table_on_the_dark_theme():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.current_theme.dark
        _, text = _colours(app)
        assert text == {k: page_kind_rgb(k) for k in KINDS_SEEN}
        # ... and the rows are painted in it (a row without spans kept no colour once).
        table = app.query_one(RecordTable)
        for y in range(table.size.height):
            line = "".join(seg.text for seg in table.render_line(y))
            if "ZERO|CONTINUE" in line or " PAGE|CONTINUE" in line:
                kind = PageKind.ZERO if "ZERO" in line else PageKind.RAW
                colours = {seg.style.color.get_truecolor() for seg in table.render_line(y) if seg.text.strip()}
                assert colours == {page_kind_rgb(kind)}, (line, colours)
                break
        else:
            raise AssertionError("no page row on screen")
    app.index.close()


async def test_light_theme_recolours_readably():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        page_map = app.query_one(PageMap)
        # Indexed, and the map shows a block with never-sent pages.  Late in a full run
        # (other tests' threads in this process) the index took over 10 s: wait up to
        # 60 s, and say so if it never got there rather than test an empty map.
        for _ in range(3000):
            if app.indexed and len(page_map.states) and (page_map.states == PageKind.NEVER).any():
                break
            await pilot.pause(0.02)
        else:
            kinds = sorted(set(page_map.states.tolist()))  # PageKind values
            block = app.index.blocks[app.block].name if app.block is not None else None
            raise AssertionError(
                f"no never-sent pages on the map after 60 s (indexed: {app.indexed}, rows {app.index.count}, "
                f"cursor {app.cursor_row}, block {block}, {len(page_map.states)} pages: {kinds})"
            )
        dark_cells, _ = _colours(app)
        app.theme = "textual-light"
        for _ in range(200):  # the theme's stylesheet reaches the widgets on a later refresh
            await pilot.pause(0.02)
            bg = _background(app)
            if contrast(bg, Color(255, 255, 255)) < 1.5 and app.query_one(PageMap).styles.background == bg:
                break
        await pilot.pause()
        assert contrast(bg, Color(255, 255, 255)) < 1.5  # a light background indeed
        assert Color.parse(app.theme_variables["background"]) == bg
        assert app.query_one(PageMap).styles.background == bg
        cells, text = _colours(app)
        for (widget, kind), rgb_ in cells.items():
            if kind != PageKind.NEVER:
                assert contrast(Color(*rgb_), bg) >= GRAPHICS_CONTRAST, (widget, kind.name)
        for kind, rgb_ in text.items():
            assert contrast(Color(*rgb_), bg) >= TEXT_CONTRAST, kind.name
        # Never sent is faint (close to the background), unlike on the dark theme's map.
        never = Color(*cells[("PageMap", PageKind.NEVER)])
        assert contrast(never, bg) < 2
        # The theme reached them: XBZRLE's yellow is darkened for white, raw kept its hue.
        assert cells[("PageMap", PageKind.XBZRLE)] != dark_cells[("PageMap", PageKind.XBZRLE)]

        # The map repaints in the new colours (its cached lines were dropped).
        def painted_colours():
            return {
                c.get_truecolor()
                for y in range(page_map.size.height)
                for seg in page_map.render_line(y)
                for c in (seg.style.color, seg.style.bgcolor)
                if seg.style is not None and c is not None
            }

        for _ in range(100):  # the repaint follows the theme change on a later refresh (slower under load)
            painted = painted_colours()
            if never.rgb in painted:
                break
            await pilot.pause(0.05)
        assert never.rgb in painted and dark_cells[("PageMap", PageKind.NEVER)] not in painted
    app.index.close()


async def test_a_theme_may_set_page_colours():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        app.register_theme(Theme("mine", primary="#0178d4", dark=True, variables={"page-xbzrle": "#ff0000"}))
        app.theme = "mine"
        await pilot.pause()
        cells, _ = _colours(app)
        assert cells[("Legend", PageKind.XBZRLE)] == (255, 0, 0)
        assert cells[("Legend", PageKind.RAW)] == page_kind_rgb(PageKind.RAW)
    app.index.close()


def test_readable_moves_only_as_far_as_needed():
    white = Color(255, 255, 255)
    for kind in KINDS_SEEN:
        colour = Color.parse(PAGE_KINDS[kind].colour)
        moved = readable(colour, white, TEXT_CONTRAST)
        assert contrast(moved, white) >= TEXT_CONTRAST
        if contrast(colour, white) >= TEXT_CONTRAST:
            assert moved == colour
        else:  # the blend step before it (1/20 less black) would not do
            steps = [colour.blend(Color(0, 0, 0), i / 20) for i in range(21)]
            at = steps.index(moved)
            assert at > 0 and contrast(steps[at - 1], white) < TEXT_CONTRAST


async def test_question_mark_shows_the_keys():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "Prev&#160;match" not in app.export_screenshot()  # a key the footer does not show
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query(HelpPanel)
        screen = app.export_screenshot()
        for description in ("Prev&#160;match", "Zoom&#160;out", "Filter", "Play/pause", "Keys"):
            assert description in screen, description
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)
    app.index.close()
