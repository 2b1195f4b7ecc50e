"""A scrollable list that renders only its visible lines (Textual's Line API).

Subclasses say how many items there are and how item *i* looks; the base class
handles the cursor, keys, mouse and scrolling.  The record table, timeline, block
list and page history are all LineLists, so a million-row table costs what the 30
visible rows cost.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class LineList(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"linelist--cursor", "linelist--current"}

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    class Selected(Message):
        """The cursor moved to item ``index`` (by key or mouse)."""

        def __init__(self, sender: LineList, index: int) -> None:
            super().__init__()
            self.list = sender
            self.index = index

        @property
        def control(self) -> LineList:
            return self.list

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.cursor = 0
        self.current: int | None = None  # an item to mark (e.g. the replay position)

    # --- for subclasses ------------------------------------------------------------

    def item_count(self) -> int:
        return 0

    def render_item(self, index: int, width: int) -> Text:
        return Text("")

    # --- state ---------------------------------------------------------------------

    def reload(self) -> None:
        """The items changed: recompute the virtual size and repaint."""
        self.virtual_size = Size(max(1, self.scrollable_content_region.width), self.item_count())
        self.refresh()

    def set_cursor(self, index: int, *, scroll: bool = True, notify: bool = False) -> None:
        n = self.item_count()
        index = max(0, min(index, n - 1)) if n else 0
        self.cursor = index
        if scroll:
            self._scroll_to_cursor()
            # Again once the layout has settled (the height may still change).
            self.call_after_refresh(self._scroll_to_cursor)
        self.refresh()
        if notify and n:
            self.post_message(self.Selected(self, index))

    def _scroll_to_cursor(self) -> None:
        height = self.scrollable_content_region.height
        top = int(self.scroll_y)
        if height <= 0:
            return
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    # --- actions -------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        self.set_cursor(self.cursor + delta, notify=True)

    def action_page(self, direction: int) -> None:
        self.set_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 1), notify=True)

    def action_jump(self, where: int) -> None:
        self.set_cursor(self.item_count() - 1 if where < 0 else where, notify=True)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = int(self.scroll_y) + offset.y
        if index < self.item_count():
            self.set_cursor(index, scroll=False, notify=True)

    def on_resize(self, event: events.Resize) -> None:
        self.reload()

    # --- rendering -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = int(self.scroll_y) + y
        base = self.rich_style
        if index >= self.item_count():
            return Strip.blank(width, base)
        text = self.render_item(index, width)
        text.truncate(width, overflow="ellipsis", pad=True)
        style = None
        if index == self.cursor:
            style = self.get_component_rich_style("linelist--cursor" if self.has_focus else "linelist--current")
        elif index == self.current:
            style = self.get_component_rich_style("linelist--current")
        if style is not None:
            text.stylize_before(style)
        segments = list(text.render(self.app.console))
        # Text.render leaves out the Text's own style when it has no spans (rich applies
        # it in __rich_console__): the row's style (records--xbzrle, ...) goes under
        # the segments here, or rows without a span would lose their colour.
        row_style = Style.parse(text.style) if isinstance(text.style, str) else text.style
        strip = Strip(segments).apply_style(base + row_style)
        return strip.crop_extend(0, width, base)

    def watch_has_focus(self, _focused: bool) -> None:
        self.refresh()


def spans_bar(parts: list[tuple[int, Style]], total: int, width: int) -> list[Segment]:
    """A horizontal stacked bar: ``parts`` (count, style) scaled so that ``total``
    fills ``width`` cells; every non-empty part gets at least one cell."""
    if total <= 0 or width <= 0:
        return []
    segs = []
    used = 0
    for count, style in parts:
        if count <= 0:
            continue
        cells = max(1, round(count * width / total))
        cells = min(cells, width - used)
        if cells <= 0:
            break
        segs.append(Segment("█" * cells, style))
        used += cells
    return segs
