"""SVG snapshots of the main screens (pytest-textual-snapshot).

Regenerate after an intended change with ``pytest tests/tui/test_tui_snapshots.py
--snapshot-update`` and look at the SVGs (or the PNGs from rsvg-convert) before
committing them."""

from __future__ import annotations

from migstream.tui.app import MigstreamApp
from support.samples import SAMPLES


async def _indexed(pilot):
    app = pilot.app
    for _ in range(500):
        if app.indexed:
            break
        await pilot.pause(0.02)
    await pilot.pause()


def _app(name):
    return MigstreamApp(str(SAMPLES / f"{name}.mig.zst"))


def test_main_screen_after_three_iterations(snap_compare):
    # START, P1, P2: the page map shows memory after iteration 2, its pages bright.
    assert snap_compare(
        _app("x86-xbzrle"), terminal_size=(120, 40), run_before=_indexed, press=["right_curly_bracket"] * 3
    )


def test_xbzrle_record_detail(snap_compare):
    assert snap_compare(
        _app("x86-xbzrle"),
        terminal_size=(120, 40),
        run_before=_indexed,
        press=["slash", "x", "b", "z", "r", "l", "e", "enter"],
    )


def test_compressed_record_at_80x24(snap_compare):
    assert snap_compare(
        _app("x86-compress"),
        terminal_size=(80, 24),
        run_before=_indexed,
        press=["slash", "c", "o", "m", "p", "r", "e", "s", "s", "enter"],
    )


def test_timeline_of_postcopy(snap_compare):
    assert snap_compare(
        _app("x86-postcopy"), terminal_size=(120, 40), run_before=_indexed, press=["right_curly_bracket"] * 4 + ["t"]
    )


def test_page_history_at_end(snap_compare):
    async def setup(pilot):
        await _indexed(pilot)
        pilot.app.go_to(pilot.app.index.count - 1)
        pilot.app.goto_page("pc.ram 0x7000")
        pilot.app.action_tab("history")
        await pilot.pause()

    assert snap_compare(_app("x86-xbzrle"), terminal_size=(100, 30), run_before=setup)
