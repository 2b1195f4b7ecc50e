"""The page map of one RAM block: one cell half per page, coloured by how the page
was last sent, as of the replay cursor.  Line API: only visible lines are built.

Each character cell shows two pages with the upper half block: the foreground is
the page of the even map row, the background the page of the odd row below it.
At zoom level z every half cell stands for 2**z pages and shows the "most
advanced" state among them (never < zero < raw < xbzrle < compressed < multifd).
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from ..tools.vocabulary import PAGE_KINDS
from ..tools.vocabulary import PageKind

#: The component class of each page kind (page map, legend, timeline, block list).
STATE_CLASSES = {kind: f"pagemap--{kind.name.lower()}" for kind in PageKind}
MAX_ZOOM = 20


class PageMap(ScrollView, can_focus=True):
    COMPONENT_CLASSES = set(STATE_CLASSES.values()) | {"pagemap--selected"}

    BINDINGS = [
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", show=False),
        Binding("minus", "zoom(1)", "Zoom out", show=False),
        Binding("left", "move(-1, 0)", "←", show=False),
        Binding("right", "move(1, 0)", "→", show=False),
        Binding("up", "move(0, -1)", "↑", show=False),
        Binding("down", "move(0, 1)", "↓", show=False),
    ]

    class PageSelected(Message):
        def __init__(self, page: int) -> None:
            super().__init__()
            self.page = page

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.states = np.zeros(0, np.uint8)  # one byte per page of the block
        self.changed = np.zeros(0, bool)
        self.selected: int | None = None
        self.zoom = 0
        self.auto_zoom = True  # fit the block on screen until the user zooms
        self._cache: LRUCache[tuple, Strip] = LRUCache(512)
        self._version = 0

    # --- data ----------------------------------------------------------------------

    def show(self, states: np.ndarray, changed: np.ndarray, selected: int | None) -> None:
        self.states = states
        self.changed = changed
        self.selected = selected
        self._version += 1
        if self.auto_zoom:
            self.fit_zoom()
        self._layout()
        if selected is not None:
            self._scroll_to_page(selected)
        self.refresh()

    def fit_zoom(self) -> None:
        """The smallest zoom at which the whole block fits on screen."""
        width, height = self._cells()
        zoom = 0
        while zoom < MAX_ZOOM and len(self.states) > width * 2 * height * (1 << zoom):
            zoom += 1
        self.zoom = zoom
        self._version += 1
        self._layout()

    def _cells(self) -> tuple[int, int]:
        region = self.scrollable_content_region
        return max(1, region.width), max(1, region.height)

    @property
    def pages_per_cell(self) -> int:
        return 1 << self.zoom

    def _layout(self) -> None:
        width, _ = self._cells()
        per_line = width * 2 * self.pages_per_cell
        lines = -(-len(self.states) // per_line) if len(self.states) else 0
        self.virtual_size = Size(width, lines)

    def _scroll_to_page(self, page: int) -> None:
        width, height = self._cells()
        line = page // (width * 2 * self.pages_per_cell)
        top = int(self.scroll_y)
        if line < top or line >= top + height:
            self.scroll_to(y=max(0, line - height // 2), animate=False, immediate=True)

    def page_at(self, x: int, y: int) -> int | None:
        """The first page shown at content cell (x, y) (y in map lines, top half)."""
        width, _ = self._cells()
        if x >= width:
            return None
        g = self.pages_per_cell
        page = (y // 2 * 2 * width + (y % 2) * width + x) * g  # y here counts half rows
        return page if page < len(self.states) else None

    # --- actions -------------------------------------------------------------------

    def action_zoom(self, delta: int) -> None:
        self.auto_zoom = False
        self.zoom = max(0, min(MAX_ZOOM, self.zoom + delta))
        self._version += 1
        self._layout()
        if self.selected is not None:
            self._scroll_to_page(self.selected)
        self.refresh()

    def action_move(self, dx: int, dy: int) -> None:
        if not len(self.states):
            return
        width, _ = self._cells()
        g = self.pages_per_cell
        page = self.selected or 0
        page += dx * g + dy * width * g
        page = max(0, min(len(self.states) - 1, page))
        self.post_message(self.PageSelected(page))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = int(self.scroll_y) + offset.y
        # A click hits a whole cell: take its upper page.
        page = self.page_at(offset.x, line * 2)
        if page is not None:
            self.post_message(self.PageSelected(page))

    def on_resize(self, event: events.Resize) -> None:
        self._version += 1
        if self.auto_zoom:
            self.fit_zoom()
        self._layout()

    # --- rendering -----------------------------------------------------------------

    def notify_style_update(self) -> None:
        # A theme switch changes the page colours ($page-*): the cached lines go.
        super().notify_style_update()
        self._cache.clear()

    def _styles(self) -> dict:
        return {s: self.get_component_rich_style(c) for s, c in STATE_CLASSES.items()}

    def render_line(self, y: int) -> Strip:
        width, _ = self._cells()
        line = int(self.scroll_y) + y
        key = (line, width, self.zoom, self._version)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_map_line(line, width)
            self._cache[key] = strip
        return strip

    def _half(self, row: int, width: int):
        """States and change marks of map half-row ``row``: arrays of ``width``,
        state -1 where there is no page."""
        g = self.pages_per_cell
        start = row * width * g
        n = len(self.states)
        states: np.ndarray = np.full(width * g, -1, np.int16)
        changed: np.ndarray = np.zeros(width * g, bool)
        if start < n:
            end = min(n, start + width * g)
            states[: end - start] = self.states[start:end]
            if len(self.changed):
                changed[: end - start] = self.changed[start:end]
        if g > 1:
            states = states.reshape(width, g).max(axis=1)
            changed = np.asarray(changed.reshape(width, g).any(axis=1))
        sel = None
        if self.selected is not None and start <= self.selected < start + width * g:
            sel = (self.selected - start) // g
        return states, changed, sel

    def _render_map_line(self, line: int, width: int) -> Strip:
        styles = self._styles()
        base = self.rich_style
        selected_style = self.get_component_rich_style("pagemap--selected")
        top, top_changed, top_sel = self._half(2 * line, width)
        bottom, bottom_changed, bottom_sel = self._half(2 * line + 1, width)
        # Pages written by the current step keep their colour; when the step
        # touched this block, all other pages are dimmed so the step stands out.
        dim = bool(len(self.changed) and self.changed.any())
        bg = base.bgcolor
        palette = {}
        for state, st in styles.items():
            c = st.color
            palette[(int(state), True)] = c
            palette[(int(state), False)] = _blend(c, bg) if dim and bg is not None and c is not None else c

        def color(state, changed, selected, which):
            if selected:
                return selected_style.color
            if state < 0:
                return None
            return palette[(int(state), bool(changed))]

        segments = []
        for x in range(width):
            up = color(top[x], top_changed[x], top_sel == x, "top")
            down = color(bottom[x], bottom_changed[x], bottom_sel == x, "bottom")
            if up is None and down is None:
                segments.append(Segment(" ", base))
            elif up is None:
                segments.append(Segment("▄", Style(color=down, bgcolor=base.bgcolor)))
            else:
                segments.append(Segment("▀", Style(color=up, bgcolor=down if down is not None else base.bgcolor)))
        return Strip(Segment.simplify(segments), width)


def _blend(color, background):
    """``color`` a third of the way from ``background``: the dimmed page colour."""
    from rich.color import Color

    a = color.get_truecolor()
    b = background.get_truecolor()
    return Color.from_rgb(*(round(y + (x - y) * 0.35) for x, y in zip(a, b)))


class Legend(Widget):
    """The page map's colours, with how many pages of the block are in each state."""

    COMPONENT_CLASSES = set(STATE_CLASSES.values()) | {"pagemap--selected"}

    DEFAULT_CSS = "Legend { height: auto; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.counts = np.zeros(len(PageKind), np.int64)
        self.note = ""
        self._lines = 0

    def show(self, counts: np.ndarray, note: str) -> None:
        self.counts = counts
        self.note = note
        lines = len(self.render().plain.splitlines())
        # A layout pass only when the legend needs a different number of lines.
        self.refresh(layout=lines != self._lines)
        self._lines = lines

    def on_resize(self) -> None:
        self._lines = len(self.render().plain.splitlines())
        self.refresh(layout=True)

    def render(self) -> Text:
        items: list[tuple[str | None, str]] = []
        for state, state_class in STATE_CLASSES.items():
            items.append((state_class, f"{PAGE_KINDS[state].word} {int(self.counts[state])}"))
        items.append((None, "dim: not in this step"))
        items.append(("pagemap--selected", "selected"))
        width = max(10, self.size.width)
        text = Text()
        used = 0
        for cls, label in items:
            cells = len(label) + 3
            if used and used + cells > width:
                text.append("\n")
                used = 0
            if cls is None:
                text.append(f"{label}  ", style="dim")
            else:
                st = self.get_component_rich_style(cls)
                text.append("█", Style(color=st.color or st.bgcolor))
                text.append(f" {label}  ")
            used += cells
        if self.note:
            text.append("\n" + self.note, style="dim")
        return text
