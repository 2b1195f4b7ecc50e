"""Opening a large stream: the first screen comes before the index is complete."""

from __future__ import annotations

import time

from migstream.tools.index import RowKind
from migstream.tui.app import MigstreamApp
from migstream.tui.records import RecordTable
from support.streams import write_large_stream


async def test_first_screen_before_index_completes(tmp_path):
    path = tmp_path / "large.mig"
    # 192 MiB of XBZRLE records: indexing takes several seconds (every delta is
    # checked), far longer than the first screen, even on a loaded machine.  The
    # test leaves right after the first screen, so the rest is never indexed.
    parts = write_large_stream(path, 192 << 20)
    started = time.monotonic()
    app = MigstreamApp(str(path))
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(RecordTable)
        while table.item_count() == 0:
            await pilot.pause(0.01)
            assert time.monotonic() - started < 20
        await pilot.pause()
        first_screen = time.monotonic() - started
        assert not app.index.complete, "the whole index was built before the first screen"
        assert app.index.bytes_done < app.index.size
        # The first screen is usable: rows, the block list and the page map.
        r = app.index.rows()
        assert r.kind[0] == RowKind.HEADER
        assert app.index.blocks and app.index.blocks[0].name == "pc.ram"
        # It answers keys while the scan goes on.
        await pilot.press("full_stop")
        assert app.cursor_row == 1
        assert first_screen < 10  # benchmarks/bench_tui_open.py measures it properly
    # Leaving the app stops the scan.
    app.index.close()
    assert app.index.count < parts * 1026
