"""Pilot tests: navigation, replay and filters on the real QEMU samples.

Expectations come from the sample's own figures (`migstream info` counts, the
reference construct decoder's record offsets), not from the app's output."""

from __future__ import annotations

import numpy as np

from migstream.tools.index import RowKind
from migstream.tools.vocabulary import PageKind
from migstream.tui.app import MigstreamApp
from migstream.tui.pagemap import Legend
from migstream.tui.pagemap import PageMap
from migstream.tui.records import RecordTable
from migstream.tui.timeline import PageHistory
from migstream.wire.grammar import RamFlag
from support.samples import SAMPLES

XBZRLE = SAMPLES / "x86-xbzrle.mig.zst"
COMPRESS = SAMPLES / "x86-compress.mig.zst"
CONT = int(RamFlag.CONTINUE)


async def indexed(pilot, app):
    for _ in range(200):
        if app.indexed:
            break
        await pilot.pause(0.02)
    await pilot.pause()
    assert app.indexed


async def type_text(pilot, text):
    for ch in text:
        await pilot.press({" ": "space", ".": "full_stop", ":": "colon", "/": "slash"}.get(ch, ch))


def page_rows(app, kind=None):
    r = app.index.rows()
    sel = r.kind == RowKind.PAGE
    if kind is not None:
        sel &= (r.flags & ~np.uint16(CONT)) == kind
    return np.flatnonzero(sel)


async def test_step_records_and_iterations():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        assert app.cursor_row == 0
        await pilot.press("full_stop", "full_stop", "full_stop")
        assert app.cursor_row == 3
        await pilot.press("comma")
        assert app.cursor_row == 2
        table = app.query_one(RecordTable)
        assert table.row_of(table.cursor) == 2
        # Iterations: START (0) then six PARTs then END; each step lands on the
        # section's last row (its EOS) and the page map shows memory after it.
        ram = [app.index.sections[i] for i in app.index.ram_sections]
        sent = 0
        for sec in ram:
            await pilot.press("right_curly_bracket")
            r = app.index.rows()
            assert r.kind[app.cursor_row] == RowKind.MARKER  # EOS
            assert app.index.section_of_row(app.cursor_row) is sec
            legend = app.query_one(Legend)
            pc = app.index.block_named("pc.ram")
            states = app.index.page_states(app.cursor_row)[pc.base : pc.base + pc.pages]
            assert legend.counts.tolist() == np.bincount(states, minlength=len(PageKind)).tolist()
            now = pc.pages - int(legend.counts[PageKind.NEVER])
            assert now >= sent
            sent = now
        # After END every page of pc.ram has been sent (precopy's bulk stage).
        assert int(app.query_one(Legend).counts[PageKind.NEVER]) == 0
        await pilot.press("left_curly_bracket")
        assert app.index.section_of_row(app.cursor_row) is ram[-2]


async def test_goto_offset_and_page():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        xb = page_rows(app, int(RamFlag.XBZRLE))
        target = int(app.index.rows().offset[xb[3]])
        await pilot.press("g")
        await type_text(pilot, hex(target + 2))  # inside the record
        await pilot.press("enter")
        assert app.cursor_row == xb[3]
        # Block + page: selects it, the history lists every record that sent it.
        await pilot.press("p")
        await type_text(pilot, "pc.ram 0x7000")
        await pilot.press("enter")
        await pilot.pause()
        pc = app.index.block_named("pc.ram")
        assert (app.block, app.page) == (pc.index, 7)
        hist = app.query_one(PageHistory)
        r = app.index.rows()
        want = np.flatnonzero((r.kind == RowKind.PAGE) & (r.block == pc.index) & (r.page == 7))
        assert hist.rows.tolist() == want.tolist()
        assert len(want) >= 2  # sent in the bulk stage and again later (XBZRLE)


async def test_search_by_flag():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        xb = page_rows(app, int(RamFlag.XBZRLE))
        await pilot.press("slash")
        await type_text(pilot, "xbzrle")
        await pilot.press("enter")
        assert app.cursor_row == xb[0]
        await pilot.press("n")
        assert app.cursor_row == xb[1]
        await pilot.press("N")
        assert app.cursor_row == xb[0]


async def test_filters_by_flag_block_iteration():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        table = app.query_one(RecordTable)
        await pilot.press("f")
        await type_text(pilot, "xbzrle")
        await pilot.press("enter")
        assert table.item_count() == 87  # `migstream info`: xbzrle 87
        r = app.index.rows()
        assert all(int(r.flags[table.row_of(i)]) & int(RamFlag.XBZRLE) for i in range(87))
        # Stepping moves within the filtered rows.
        first, second = table.row_of(0), table.row_of(1)
        app.go_to(first)
        await pilot.press("full_stop")
        assert app.cursor_row == second
        assert app.set_filter("block:pc.bios")
        assert table.item_count() == 64  # zero 18 + page 46
        assert app.set_filter("zero block:pc.rom")
        assert table.item_count() == 32
        assert app.set_filter("iter:0")
        ram0 = app.index.sections[app.index.ram_sections[0]]
        assert [table.row_of(i) for i in range(table.item_count())] == list(range(ram0.row, ram0.end_row))
        assert not app.set_filter("nonsense")
        assert app.set_filter("")
        assert table.item_count() == app.index.count


async def test_play_and_pause():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        await pilot.press("greater_than_sign", "greater_than_sign")  # 500 rows/s
        await pilot.press("space")
        assert app.playing
        await pilot.pause(0.5)
        await pilot.press("space")
        assert not app.playing
        moved = app.cursor_row
        assert moved > 20
        await pilot.pause(0.3)
        assert app.cursor_row == moved


async def test_click_page_map_selects_page_and_shows_history():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        app.go_to(app.index.count - 1)
        await pilot.pause()
        pagemap = app.query_one(PageMap)
        await pilot.click(PageMap, offset=(0, 0))
        await pilot.pause()
        assert app.page == 0
        from textual.widgets import TabbedContent

        assert app.query_one(TabbedContent).active == "history"
        hist = app.query_one(PageHistory)
        assert len(hist.rows) >= 1
        # Choosing a history entry moves the cursor to that record.
        hist.focus()
        await pilot.press("home")
        assert app.cursor_row == int(hist.rows[0])
        # Zooming changes pages per cell.
        pagemap.focus()
        before = pagemap.pages_per_cell
        await pilot.press("minus")
        assert pagemap.pages_per_cell == 2 * before


async def test_record_table_click_moves_cursor():
    app = MigstreamApp(str(COMPRESS))
    async with app.run_test(size=(80, 24)) as pilot:
        await indexed(pilot, app)
        await pilot.click(RecordTable, offset=(2, 5))
        await pilot.pause()
        assert app.cursor_row == 5
        # The detail pane inflates COMPRESS_PAGE records.
        comp = page_rows(app, int(RamFlag.COMPRESS_PAGE))
        app.go_to(int(comp[0]))
        await pilot.pause()
        from migstream.tui.detail import DetailPane

        text = app.query_one(DetailPane).text.plain
        assert "inflated page" in text
        assert "COMPRESS_PAGE" in text


async def test_command_palette_lists_navigation():
    app = MigstreamApp(str(XBZRLE))
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to byte offset" in titles and "Filter: xbzrle records" in titles
        assert "Show block pc.bios" in titles


async def test_multifd_channels_in_the_page_map():
    name = "x86-multifd-nocomp"
    app = MigstreamApp(
        str(SAMPLES / f"{name}.mig.zst"), channels=[SAMPLES / f"{name}.ch0.zst", SAMPLES / f"{name}.ch1.zst"]
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        assert app.set_filter("multifd")
        table = app.query_one(RecordTable)
        r = app.index.rows()
        assert table.item_count() == int(np.count_nonzero(r.flags == 0x408)) > 0
        app.go_to(app.index.count - 1)
        await pilot.pause()
        assert int(app.query_one(Legend).counts[PageKind.NEVER]) == 0
        assert int(app.query_one(Legend).counts[PageKind.MULTIFD]) > 0


async def test_multifd_page_detail_shows_the_page():
    # The detail of a multifd page row is the page itself, read back (and decompressed)
    # from its zstd channel file: its hex dump holds the bytes of the guest's RAM.
    from migstream.tui.detail import DetailPane
    from support.samples import read_zst
    from support.samples import sample_by_name

    name = "x86-multifd-zstd"
    sample = sample_by_name(name)
    app = MigstreamApp(str(SAMPLES / sample["stream"]), channels=[SAMPLES / c["file"] for c in sample["channels"]])
    async with app.run_test(size=(120, 40)) as pilot:
        await indexed(pilot, app)
        ix = app.index
        r = ix.rows()
        truth = next(t for t in sample["truth"] if t["block"] == sample["ram_block"])
        ram = read_zst(SAMPLES / truth["file"])
        ps = ix.page_size
        # A normal multifd page that is the last record of its page and is not all one byte.
        for row in np.flatnonzero(r.flags == 0x408):
            row = int(row)
            page = int(r.page[row])
            want = ram[page * ps - truth["block_offset"] :][:ps]
            if ix.rows_touching(int(r.block[row]), page)[-1] == row and len(set(want)) > 4:
                break
        else:
            raise AssertionError("no multifd page with varied content")
        app.go_to(row)
        await pilot.pause()
        text = app.query_one(DetailPane).text.plain
        assert "read back from the channel file" in text
        first_line = " ".join(f"{b:02x}" for b in want[:8])
        assert first_line in text
