"""Sections and iterations in stream order, the RAM block list and the page
history: LineLists over the index's small per-section and per-block tables."""

from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.text import Text

from ..tools.index import StreamIndex
from ..tools.vocabulary import PageKind
from ..tools.vocabulary import human_size
from ..wire.grammar import SectionType
from .linelist import LineList
from .pagemap import STATE_CLASSES
from .records import encoding_word
from .records import section_tag

_BAR_STATES = [k for k in PageKind if k != PageKind.NEVER]


class Timeline(LineList):
    """One line per RAM section (START, each PART = one iteration, END) and per
    command; runs of device sections are folded into one line.  Each RAM line has
    a bar of the pages it sent, stacked by encoding, scaled to the busiest one."""

    COMPONENT_CLASSES = LineList.COMPONENT_CLASSES | set(STATE_CLASSES.values())

    def __init__(self, index: StreamIndex, **kw) -> None:
        super().__init__(**kw)
        self.index = index
        self.items: list[tuple[int, int]] = []  # (first, last) section numbers per line
        self._seen = 0

    def sync(self) -> None:
        """Fold the sections indexed since the last call into lines."""
        secs = self.index.sections
        n = len(secs)
        for i in range(self._seen, n):
            sec = secs[i]
            device = sec.type is SectionType.FULL and sec.iteration is None
            if device and self.items:
                first, last = self.items[-1]
                prev = secs[last]
                if prev.type is SectionType.FULL and prev.iteration is None and last == i - 1:
                    self.items[-1] = (first, i)
                    continue
            self.items.append((i, i))
        self._seen = n
        self.reload()

    def item_count(self) -> int:
        return len(self.items)

    def item_for_section(self, section: int) -> int:
        for k, (first, last) in enumerate(self.items):
            if first <= section <= last:
                return k
        return 0

    def render_item(self, index: int, width: int) -> Text:
        first, last = self.items[index]
        secs = self.index.sections
        sec = secs[first]
        text = Text()
        if sec.type is None:
            text.append(f"{'cmd':<6}{sec.idstr}", style="italic")
            return text
        if last > first:
            text.append(
                f"{'FULL':<6}{last - first + 1} device sections ({secs[first].idstr} … {secs[last].idstr})", style="dim"
            )
            return text
        tag = section_tag(sec)
        text.append(f"{tag:<6}{sec.idstr[:12]:<12} ")
        if sec.iteration is None:
            text.append(sec.type.name.lower(), style="dim")
            return text
        pages = int(sec.pages.sum())
        label = f"{pages:>7} pg {human_size(sec.page_bytes, compact=True):>7} "
        room = width - text.cell_len - len(label) - 1
        text.append(label)
        if room > 4:
            busiest = max((int(s.pages.sum()) for s in (secs[i] for i in self.index.ram_sections)), default=0)
            scale = room * pages // busiest if busiest else 0
            used = 0
            for state in _BAR_STATES:
                count = int(sec.pages[state])
                if not count:
                    continue
                cells = max(1, round(count * room / busiest)) if busiest else 0
                cells = min(cells, max(scale, 1) - used)
                if cells <= 0:
                    break
                st = self.get_component_rich_style(STATE_CLASSES[state])
                text.append("█" * cells, Style(color=st.color or st.bgcolor))
                used += cells
        return text


class BlockList(LineList):
    """RAM blocks: size, share of pages sent as of the cursor, a bar by encoding."""

    COMPONENT_CLASSES = LineList.COMPONENT_CLASSES | set(STATE_CLASSES.values())

    def __init__(self, index: StreamIndex, **kw) -> None:
        super().__init__(**kw)
        self.index = index
        self.states: np.ndarray | None = None

    def item_count(self) -> int:
        return len(self.index.blocks)

    def render_item(self, index: int, width: int) -> Text:
        blk = self.index.blocks[index]
        text = Text()
        name_w = max(8, min(22, width - 30))
        name = blk.name if len(blk.name) <= name_w else blk.name[: name_w - 1] + "…"
        text.append(f"{name:<{name_w}} {human_size(blk.used_length, compact=True):>7} ")
        if self.states is None or not blk.pages:
            text.append("no page map" if not blk.pages else "")
            return text
        states = self.states[blk.base : blk.base + blk.pages]
        counts = np.bincount(states, minlength=len(PageKind))
        sent = blk.pages - int(counts[PageKind.NEVER])
        text.append(f"{100 * sent / blk.pages:5.1f}% ")
        room = width - text.cell_len
        if room > 2:
            for state in _BAR_STATES:
                if counts[state]:
                    cells = max(1, round(int(counts[state]) * room / blk.pages))
                    st = self.get_component_rich_style(STATE_CLASSES[state])
                    text.append("▬" * min(cells, room), Style(color=st.color or st.bgcolor))
                    room -= cells
                    if room <= 0:
                        break
        return text


class PageHistory(LineList):
    """Every record that sent the selected page, in stream order."""

    def __init__(self, index: StreamIndex, **kw) -> None:
        super().__init__(**kw)
        self.index = index
        self.rows = np.zeros(0, np.int64)
        self.title = ""

    def show(self, rows: np.ndarray, cursor_row: int) -> None:
        self.rows = rows
        # The current record, or the last one before the cursor.
        at = int(np.searchsorted(rows, cursor_row, side="right")) - 1
        self.current = at if at >= 0 else None
        self.cursor = max(at, 0)
        self.reload()
        self._scroll_to_cursor()

    def item_count(self) -> int:
        return len(self.rows)

    def render_item(self, index: int, width: int) -> Text:
        ix = self.index
        row = int(self.rows[index])
        r = ix.rows()
        flags = int(r.flags[row])
        enc = encoding_word(flags)
        sec = ix.section_of_row(row)
        text = Text()
        text.append(f"#{row:<8} {int(r.offset[row]):#010x} {section_tag(sec):<5} {enc:<7}")
        text.append(f"{ix.payload_size(row):>6} B")
        return text
