"""``migstream tui STREAM``: replay a migration stream record by record.

Everything follows one cursor, the current row of the index: the record table,
the detail pane, the page map (memory as of the cursor, the current step's pages
highlighted), the block list, the timeline and the page history.  The index is
built by a background thread (``StreamIndex.scan``); the screen is usable from
the first batch on.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from rich.text import Text
from textual import on
from textual import work
from textual.app import App
from textual.app import ComposeResult
from textual.app import SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets import Sparkline
from textual.widgets import TabbedContent
from textual.widgets import TabPane
from textual.worker import get_current_worker

from ..tools.filtering import FilterError
from ..tools.filtering import RowFilter
from ..tools.filtering import filtered_rows
from ..tools.filtering import next_match
from ..tools.filtering import parse_filter
from ..tools.filtering import search_kind
from ..tools.filtering import section_last_row
from ..tools.index import RowKind
from ..tools.index import ScanProgress
from ..tools.index import StreamIndex
from ..tools.vocabulary import PageKind
from ..tools.vocabulary import human_size
from ..wire.grammar import RamFlag
from ..wire.grammar import SectionType
from .detail import DetailPane
from .dialogs import Prompt
from .linelist import LineList
from .pagemap import Legend
from .pagemap import PageMap
from .palette import page_kind_css
from .palette import page_kind_variables
from .records import RecordTable
from .records import section_tag
from .timeline import BlockList
from .timeline import PageHistory
from .timeline import Timeline

SPEEDS = [1, 5, 20, 100, 500, 2000, 10000, 100000]  # rows per second
TICK = 0.1
SCAN_PAUSE = 0.03  # seconds the scan sleeps after each batch


class TextLine(Widget):
    """Fixed-size text (summary, titles): an update repaints without a layout pass."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.text = Text("")

    def set(self, text: Text) -> None:
        self.text = text
        self.refresh()

    def render(self) -> Text:
        return self.text


class IndexProgress(Message):
    def __init__(self, progress: ScanProgress) -> None:
        super().__init__()
        self.progress = progress


class MigstreamApp(App):
    CSS_PATH = "app.tcss"
    CSS = page_kind_css()  # the page kinds' colours: theme variables from tools/vocabulary.py
    TITLE = "migstream"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "toggle_keys", "Keys", key_display="?"),
        Binding("space", "play", "Play/pause"),
        Binding("full_stop", "step(1)", "Rec ▶", key_display="."),
        Binding("comma", "step(-1)", "◀ Rec", key_display=",", show=False),
        Binding("right_square_bracket", "step_section(1)", "Sect ▶", key_display="]"),
        Binding("left_square_bracket", "step_section(-1)", "◀ Sect", key_display="[", show=False),
        Binding("right_curly_bracket", "step_iteration(1)", "Iter ▶", key_display="}"),
        Binding("left_curly_bracket", "step_iteration(-1)", "◀ Iter", key_display="{", show=False),
        Binding("greater_than_sign", "speed(1)", "Faster", key_display=">", show=False),
        Binding("less_than_sign", "speed(-1)", "Slower", key_display="<", show=False),
        Binding("g", "goto_offset", "Offset"),
        Binding("p", "goto_page", "Page"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "search_next(1)", "Next match", show=False),
        Binding("N", "search_next(-1)", "Prev match", show=False),
        Binding("f", "filter", "Filter"),
        Binding("z", "zoom(-1)", "Zoom in", show=False),
        Binding("Z", "zoom(1)", "Zoom out", show=False),
        Binding("d", "tab('detail')", "Detail", show=False),
        Binding("h", "tab('history')", "History", show=False),
        Binding("t", "tab('timeline')", "Timeline", show=False),
    ]

    def __init__(self, path: str, *, index: StreamIndex | None = None, scan_budget: float = 0.1, channels=()) -> None:
        super().__init__()
        self.path = path
        self.index = index if index is not None else StreamIndex(path, channels=channels)
        self.scan_budget = scan_budget
        self.cursor_row = 0
        self.step_from = 0
        self.block: int | None = None
        self.page: int | None = None
        self.filter = RowFilter()
        self.search_kind: int | None = None
        self.speed = 3
        self.playing = False
        self._play_credit = 0.0
        self._timer: Timer | None = None
        self._first_blocks = False
        self.first_screen_at: float | None = None
        self._shown: dict[str, tuple] = {}
        self.indexed = False  # the UI has taken in the complete index

    # --- layout ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ix = self.index
        yield TextLine(id="summary")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield TextLine(id="records-header")
                yield RecordTable(ix, id="records")
            with Vertical(id="right"):
                yield BlockList(ix, id="blocks")
                yield TextLine(id="map-title")
                yield PageMap(id="pagemap")
                yield Legend(id="legend")
        with TabbedContent(id="bottom", initial="detail"):
            with TabPane("Detail", id="detail"):
                yield DetailPane(ix, id="detail-pane")
            with TabPane("Page history", id="history"):
                yield TextLine(id="history-title")
                yield PageHistory(ix, id="history-list")
            with TabPane("Timeline", id="timeline"):
                yield Sparkline([], id="sparkline")
                yield Timeline(ix, id="timeline-list")
        yield Footer()

    def on_mount(self) -> None:
        # The scan thread is pure Python: with the default 5 ms switch interval the
        # UI thread waits up to 5 ms for the GIL after every await; 0.5 ms keeps
        # it responsive while a big stream is indexed.
        sys.setswitchinterval(0.0005)
        self.title = f"migstream · {os.path.basename(self.path)}"
        self.table.focus()
        self._refresh_summary()
        # Start indexing once the (empty) screen is up: the scan thread would
        # otherwise compete for the GIL with Textual's start-up.
        self.call_after_refresh(self.scan)

    def _mark_first_screen(self) -> None:
        if self.first_screen_at is None:
            self.first_screen_at = time.perf_counter()

    def _set(self, selector: str, text: Text) -> None:
        """Show ``text`` in a TextLine, repainting only when it changed."""
        key = (text.plain, repr(text.spans), text.style)
        if self._shown.get(selector) != key:
            self._shown[selector] = key
            self.query_one(selector, TextLine).set(text)

    @property
    def table(self) -> RecordTable:
        return self.query_one("#records", RecordTable)

    # --- indexing --------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="scan")
    def scan(self) -> None:
        worker = get_current_worker()
        for progress in self.index.scan(self.scan_budget):
            if worker.is_cancelled:  # the app is closing
                self.index.cancel()
                break
            self.post_message(IndexProgress(progress))
            # Leave the UI thread the GIL for a moment after every batch, so that
            # it stays responsive while a big stream is indexed.
            time.sleep(SCAN_PAUSE)

    def on_index_progress(self, message: IndexProgress) -> None:
        if not self.screen.is_mounted or not self.query("#records"):
            return  # a batch that arrives while the app closes
        try:
            self._show_index_progress(message)
        except NoMatches:
            # The app is closing: its widgets are removed one by one, so a batch
            # posted just before the scan was cancelled may find some gone.
            return

    def _show_index_progress(self, message: IndexProgress) -> None:
        ix = self.index
        if self.filter.active:
            self._apply_filter()
        else:
            self.table.update_count(ix.count)
        self.query_one(Timeline).sync()
        self.query_one(BlockList).reload()
        self._update_sparkline()
        if not self._first_blocks and ix.blocks:
            self._first_blocks = True
            self.block = max(range(len(ix.blocks)), key=lambda i: ix.blocks[i].pages)
            self.query_one(PageMap).fit_zoom()
        self._refresh_summary()
        if message.progress.complete or self.cursor_row >= ix.count - 1 or ix.count < 200:
            self.refresh_views(scroll=False)
        if message.progress.complete:
            self.indexed = True
        if self.first_screen_at is None and ix.count:
            # Runs once the screen with the first rows has been painted.
            self.call_after_refresh(self._mark_first_screen)

    def _update_sparkline(self) -> None:
        ix = self.index
        data = [float(ix.sections[i].page_bytes) for i in ix.ram_sections]
        self.query_one(Sparkline).data = data or [0.0]

    # --- the cursor ------------------------------------------------------------------

    def go_to(self, row: int, step_from: int | None = None) -> None:
        count = self.index.count
        if not count:
            return
        row = max(0, min(row, count - 1))
        self.cursor_row = row
        self.step_from = row if step_from is None else max(0, min(step_from, row))
        r = self.index.rows()
        if r.kind[row] == RowKind.PAGE:
            self.block = int(r.block[row])
            self.page = int(r.page[row])
        self.refresh_views()

    def refresh_views(self, scroll: bool = True) -> None:
        ix = self.index
        if not ix.count:
            return
        row = min(self.cursor_row, ix.count - 1)
        table = self.table
        table.current = table.item_of(row)
        table.set_cursor(table.current, scroll=scroll)
        self.query_one(DetailPane).show(row)
        states = ix.page_states(row)
        blocks = self.query_one(BlockList)
        blocks.states = states
        if self.block is not None:
            blocks.current = self.block
            blocks.cursor = self.block
        blocks.refresh()
        self._refresh_map(states)
        timeline = self.query_one(Timeline)
        sec = ix.section_of_row(row)
        if sec is not None:
            timeline.current = timeline.item_for_section(ix.sections.index(sec))
            timeline.cursor = timeline.current
            timeline._scroll_to_cursor()
            timeline.refresh()
        self._refresh_history()
        self._refresh_summary()

    def _refresh_map(self, states: np.ndarray) -> None:
        ix = self.index
        pagemap = self.query_one(PageMap)
        legend = self.query_one(Legend)
        if self.block is None or self.block >= len(ix.blocks):
            self._set("#map-title", Text("page map: no RAM block yet"))
            return
        blk = ix.blocks[self.block]
        block_states = states[blk.base : blk.base + blk.pages]
        changed = np.zeros(blk.pages, bool)
        slots = ix.changed_pages(self.step_from, self.cursor_row) - blk.base
        slots = slots[(slots >= 0) & (slots < blk.pages)]
        changed[slots] = True
        selected = self.page if self.page is not None and self.page < blk.pages else None
        pagemap.show(block_states, changed, selected)
        counts = np.bincount(block_states, minlength=len(PageKind))
        per_cell = 2 * pagemap.pages_per_cell
        n = int(changed.sum())
        note = f"{n} page{'s' if n != 1 else ''} in this step"
        if selected is not None:
            note += f" · page {selected} ({selected * (ix.page_size or 4096):#x})"
        legend.show(counts, note)
        text = Text(blk.name, style="bold")
        text.append(f" {blk.pages} pages, {per_cell}/cell, row {self.cursor_row}")
        self._set("#map-title", text)

    def _refresh_history(self) -> None:
        ix = self.index
        hist = self.query_one(PageHistory)
        if self.block is None or self.page is None or self.block >= len(ix.blocks):
            self._set("#history-title", Text("select a page in the map (click, or arrows when the map has focus)"))
            hist.show(np.zeros(0, np.int64), self.cursor_row)
            return
        blk = ix.blocks[self.block]
        rows = ix.rows_touching(self.block, self.page)
        self._set(
            "#history-title",
            Text(f"{blk.name} page {self.page} (offset {self.page * (ix.page_size or 4096):#x}): {len(rows)} records"),
        )
        hist.show(rows, self.cursor_row)

    def _refresh_summary(self) -> None:
        ix = self.index
        cfg = ix.configuration
        width = max(20, self.size.width - 2)
        # Most important first; what does not fit on the first line is dropped.
        facts = [
            (os.path.basename(self.path), "bold"),
            (cfg.machine if cfg else "no configuration", ""),
            (f"v{ix.version or '?'}", ""),
            (f"page {ix.page_size or '?'}", ""),
        ]
        total = sum(b.used_length for b in ix.blocks)
        facts.append((f"{len(ix.blocks)} blocks {human_size(total, compact=True)}", ""))
        parts = sum(1 for i in ix.ram_sections if ix.sections[i].type is SectionType.PART)
        facts.append((f"{parts} iterations", ""))
        facts.append((f"{ix.count} rows", ""))
        if cfg and cfg.capabilities:
            facts.append(("caps " + ",".join(cfg.capabilities), ""))
        if ix.commands:
            facts.append((f"{sum(ix.commands.values())} commands", ""))
        if ix.device_sections:
            facts.append((f"{ix.device_sections} device sections", ""))
        line1 = Text()
        for text, style in facts:
            sep = " · " if line1.cell_len else ""
            if line1.cell_len + len(sep) + len(text) > width:
                continue
            line1.append(sep)
            line1.append(text, style=style)
        line2 = Text()
        if ix.complete:
            line2.append("indexed", style="green")
        else:
            pct = 100 * ix.bytes_done / ix.size if ix.size else 0
            line2.append(f"indexing {pct:4.1f}% ({human_size(ix.bytes_done, compact=True)})", style="yellow")
        if ix.count:
            row = min(self.cursor_row, ix.count - 1)
            sec = ix.section_of_row(row)
            off = int(ix.rows().offset[row])
            line2.append(f" · row {row} @ {off:#x} {section_tag(sec)}")
        line2.append(f" · {'playing' if self.playing else 'paused'} {SPEEDS[self.speed]}/s")
        if self.filter.active:
            line2.append(f" · filter {self.filter.describe(ix)} ({self.table.item_count()})", style="cyan")
        if ix.error is not None:
            line2.append(f" · {ix.error}", style="bold red")
        elif ix.undecoded:
            line2.append(" · " + ix.undecoded, style="dim")
        line2.truncate(width, overflow="ellipsis")
        self._set("#summary", Text("\n").join([line1, line2]))
        self._set("#records-header", self.table.header(self.table.scrollable_content_region.width or 60))

    # --- events from the views -------------------------------------------------------

    @on(LineList.Selected, "#records")
    def _on_record(self, event: LineList.Selected) -> None:
        self.go_to(self.table.row_of(event.index))

    @on(LineList.Selected, "#history-list")
    def _on_history(self, event: LineList.Selected) -> None:
        hist = self.query_one(PageHistory)
        if len(hist.rows):
            self.go_to(int(hist.rows[event.index]))

    @on(LineList.Selected, "#timeline-list")
    def _on_timeline(self, event: LineList.Selected) -> None:
        timeline = self.query_one(Timeline)
        first, last = timeline.items[event.index]
        secs = self.index.sections
        self.go_to(self._section_last_row(secs[last]), step_from=secs[first].row)

    @on(LineList.Selected, "#blocks")
    def _on_block(self, event: LineList.Selected) -> None:
        self.block = event.index
        self.page = None
        self.query_one(PageMap).fit_zoom()
        self.refresh_views(scroll=False)

    def on_page_map_page_selected(self, message: PageMap.PageSelected) -> None:
        self.page = message.page
        self.refresh_views(scroll=False)
        self.query_one(TabbedContent).active = "history"

    def on_resize(self) -> None:
        self.call_after_refresh(self._refresh_summary)

    # --- replay ----------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        table = self.table
        item = table.item_of(self.cursor_row) + delta
        if 0 <= item < table.item_count():
            self.go_to(table.row_of(item))

    def _section_last_row(self, sec) -> int:
        return section_last_row(self.index, sec)

    def _step_sections(self, sections: list, delta: int) -> None:
        """Move to the end of the next (or previous) section in ``sections``; the
        step highlighted is that whole section."""
        if not sections:
            return
        ends = [self._section_last_row(s) for s in sections]
        row = self.cursor_row
        if delta > 0:
            k = next((k for k, e in enumerate(ends) if e > row), None)
        else:
            k = next((k for k in range(len(ends) - 1, -1, -1) if ends[k] < row), None)
        if k is None:
            self.bell()
            return
        self.go_to(ends[k], step_from=sections[k].row)

    def action_step_section(self, delta: int) -> None:
        self._step_sections(self.index.sections, delta)

    def action_step_iteration(self, delta: int) -> None:
        ix = self.index
        self._step_sections([ix.sections[i] for i in ix.ram_sections], delta)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Called for the current theme whenever it changes; a theme's own variables
        # (Theme(variables=...)) override these.
        return {**super().get_theme_variable_defaults(), **page_kind_variables(self.current_theme)}

    def action_toggle_keys(self) -> None:
        """``?``: the keys of the app and of the focused view, in a panel; ``?`` again hides it."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_play(self) -> None:
        self.playing = not self.playing
        if self.playing:
            self._play_credit = 0.0
            self._timer = self.set_interval(TICK, self._tick)
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._refresh_summary()

    def _tick(self) -> None:
        self._play_credit += SPEEDS[self.speed] * TICK
        steps = int(self._play_credit)
        if not steps:
            return
        self._play_credit -= steps
        table = self.table
        start = table.item_of(self.cursor_row)
        item = min(start + steps, table.item_count() - 1)
        if item <= start:
            if self.index.complete:
                self.action_play()  # reached the end
            return
        self.go_to(table.row_of(item), step_from=table.row_of(start + 1))

    def action_speed(self, delta: int) -> None:
        self.speed = max(0, min(len(SPEEDS) - 1, self.speed + delta))
        self._refresh_summary()

    def action_zoom(self, delta: int) -> None:
        self.query_one(PageMap).action_zoom(delta)
        self.refresh_views(scroll=False)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    # --- navigation ------------------------------------------------------------------

    def action_goto_offset(self) -> None:
        def done(value: str | None) -> None:
            if not value:
                return
            try:
                offset = int(value, 0)
            except ValueError:
                self.notify(f"not a byte offset: {value!r}", severity="error")
                return
            self.go_to(self.index.row_at_offset(offset))

        self.push_screen(Prompt("Go to byte offset", "e.g. 0x1f2000 or 123456"), done)

    def action_goto_page(self) -> None:
        def done(value: str | None) -> None:
            if value:
                self.goto_page(value)

        self.push_screen(Prompt("Go to block + page offset", "e.g. pc.ram 0x1000 (block name or number)"), done)

    def goto_page(self, spec: str) -> bool:
        """``"pc.ram 0x1000"``: select that page; the cursor moves to the last record
        that sent it up to the cursor, else the first one after."""
        ix = self.index
        parts = spec.replace(":", " ").split()
        if len(parts) != 2:
            self.notify("give a block and a page offset", severity="error")
            return False
        name, off = parts
        blk = ix.block_named(name)
        if blk is None and name.isdigit() and int(name) < len(ix.blocks):
            blk = ix.blocks[int(name)]
        if blk is None:
            self.notify(f"no RAM block {name!r}", severity="error")
            return False
        try:
            page = int(off, 0) // (ix.page_size or 4096)
        except ValueError:
            self.notify(f"not a page offset: {off!r}", severity="error")
            return False
        if page >= blk.pages:
            self.notify(f"offset {off} is outside {blk.name}", severity="error")
            return False
        self.block, self.page = blk.index, page
        rows = ix.rows_touching(blk.index, page)
        before = rows[rows <= self.cursor_row]
        if len(before):
            self.go_to(int(before[-1]))
        elif len(rows):
            self.go_to(int(rows[0]))
        else:
            self.refresh_views()
            self.notify(f"{blk.name} page {page} was never sent")
        return True

    def action_search(self) -> None:
        def done(value: str | None) -> None:
            if not value:
                return
            try:
                self.search_kind = search_kind(value)
            except FilterError as exc:
                self.notify(str(exc), severity="error")
                return
            self.action_search_next(1)

        self.push_screen(
            Prompt("Search records by flag", "zero, page, xbzrle, compress, eos, mem_size, multifd_flush, continue"),
            done,
        )

    def action_search_next(self, direction: int) -> None:
        if self.search_kind is None:
            self.action_search()
            return
        target = next_match(self.index, self.search_kind, self.cursor_row, direction)
        if target is None:
            self.notify(f"no more {RamFlag(self.search_kind).name} records", severity="warning")
            return
        self.go_to(target)

    def action_filter(self) -> None:
        def done(value: str | None) -> None:
            if value is not None:
                self.set_filter(value)

        self.push_screen(
            Prompt(
                "Filter records",
                "flags (xbzrle zero page compress eos ...), block:NAME, iter:N; empty clears",
                self.filter.describe(self.index),
            ),
            done,
        )

    def set_filter(self, spec: str) -> bool:
        try:
            self.filter = parse_filter(spec, self.index)
        except FilterError as exc:
            self.notify(str(exc), severity="error")
            return False
        self._apply_filter()
        self.refresh_views()
        return True

    def _apply_filter(self) -> None:
        table = self.table
        table.view = filtered_rows(self.index, self.filter)
        table.update_count(self.index.count)

    # --- command palette -------------------------------------------------------------

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Go to byte offset", "Move the cursor to the record at an offset", self.action_goto_offset)
        yield SystemCommand("Go to block and page", "Select a page and its records", self.action_goto_page)
        yield SystemCommand("Search by flag", "Next record with a flag", self.action_search)
        yield SystemCommand("Filter records", "By flag, block, iteration", self.action_filter)
        yield SystemCommand("Clear filter", "Show every record", lambda: self.set_filter(""))
        yield SystemCommand("Play / pause replay", "Advance the cursor automatically", self.action_play)
        yield SystemCommand("Next iteration", "Replay one RAM iteration", lambda: self.action_step_iteration(1))
        yield SystemCommand("Previous iteration", "Back one RAM iteration", lambda: self.action_step_iteration(-1))
        yield SystemCommand("First record", "Back to the start", lambda: self.go_to(0))
        yield SystemCommand("Last record", "End of the stream", lambda: self.go_to(self.index.count - 1))
        for word in ("xbzrle", "compress", "zero", "page"):
            yield SystemCommand(f"Filter: {word} records", f"Only {word} records", lambda w=word: self.set_filter(w))
        for blk in self.index.blocks:
            yield SystemCommand(
                f"Show block {blk.name}", "Page map of this block", lambda b=blk.index: self._select_block(b)
            )

    def _select_block(self, block: int) -> None:
        self.block = block
        self.page = None
        self.query_one(PageMap).fit_zoom()
        self.refresh_views(scroll=False)

    def on_unmount(self) -> None:
        self.index.cancel()


def run(path: str) -> None:
    app = MigstreamApp(path)
    try:
        app.run()
    finally:
        app.index.close()
