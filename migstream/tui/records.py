"""The record table: one line per row of the index (filtered), Line API."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.cache import LRUCache

from ..events import block_flag_names
from ..events import dirty_bitmap_flag_names
from ..events import flag_names
from ..tools.index import MULTIFD_ROW
from ..tools.index import RowKind
from ..tools.index import StreamIndex
from ..tools.index import command_name
from ..tools.index.pagestate import STATE_OF_FLAGS
from ..tools.vocabulary import PAGE_KINDS
from ..tools.vocabulary import PageKind
from ..wire.grammar import RamFlag
from ..wire.grammar import SectionType
from .linelist import LineList


def page_kind_of(flags: int) -> PageKind | None:
    """How a page row's record sent its page (None for flags that send none)."""
    kind = PageKind(int(STATE_OF_FLAGS[flags & (len(STATE_OF_FLAGS) - 1)]))
    return None if kind == PageKind.NEVER else kind


def encoding_word(flags: int) -> str:
    """The encoding column: the page kind's short word (tools/vocabulary.py), or ``?``."""
    kind = page_kind_of(flags)
    return PAGE_KINDS[kind].short if kind is not None else "?"


#: (title, width) in order of importance; columns that do not fit are dropped.
COLUMNS = [("offset", 10), ("flags", 18), ("page off", 10), ("sect", 4), ("block", 10), ("size", 5), ("enc", 7)]
ORDER = ["offset", "sect", "block", "page off", "flags", "enc", "size"]


def section_tag(sec) -> str:
    if sec is None:
        return "-"
    if sec.type is None:
        return "cmd"
    if sec.iteration is not None:
        return f"{sec.type.name[0]}{sec.iteration}"
    return f"{sec.type.name[0]}#{sec.section_id}"


class RecordTable(LineList):
    """Rows of ``index``; ``view`` (row numbers) when a filter is on."""

    COMPONENT_CLASSES = LineList.COMPONENT_CLASSES | {
        "records--section",
        "records--marker",
        "records--zero",
        "records--raw",
        "records--xbzrle",
        "records--compressed",
        "records--multifd",
        "records--other",
    }

    def __init__(self, index: StreamIndex, **kw) -> None:
        super().__init__(**kw)
        self.index = index
        self.view: np.ndarray | None = None  # row numbers shown, None: all rows
        self._count = 0
        self._sizes: LRUCache[int, int] = LRUCache(4096)

    def item_count(self) -> int:
        return self._count if self.view is None else len(self.view)

    def update_count(self, count: int) -> None:
        self._count = count
        self.reload()

    def row_of(self, item: int) -> int:
        return int(self.view[item]) if self.view is not None else item

    def item_of(self, row: int) -> int:
        """The item showing ``row``, or the nearest one before it."""
        if self.view is None:
            return row
        i = int(np.searchsorted(self.view, row, side="right")) - 1
        return max(i, 0)

    def columns(self, width: int) -> list[tuple[str, int]]:
        chosen: list[str] = []
        used = 0
        widths = dict(COLUMNS, offset=self._offset_width())
        for title, w in widths.items():
            if used + w + 1 <= width or not chosen:
                chosen.append(title)
                used += w + 1
        return [(t, widths[t]) for t in ORDER if t in chosen]

    def _offset_width(self) -> int:
        """Offsets as wide as the stream needs: 0x + hex digits."""
        return 2 + len(f"{max(self.index.size or 0, self.index.bytes_done, 0xFFFFFF):x}")

    def header(self, width: int) -> Text:
        text = Text()
        for title, w in self.columns(width):
            text.append((title if title != "size" else title.rjust(w)).ljust(w) + " ")
        return text

    def payload_size(self, row: int) -> int:
        size = self._sizes.get(row)
        if size is None:
            size = self.index.payload_size(row)
            self._sizes[row] = size
        return size

    def render_item(self, item: int, width: int) -> Text:
        ix = self.index
        row = self.row_of(item)
        r = ix.rows()
        if row >= r.count:
            return Text("")
        kind = RowKind(int(r.kind[row]))
        flags = int(r.flags[row])
        sec = ix.section_of_row(row)
        cells: dict[str, str] = {
            "offset": f"{int(r.offset[row]):#0{self._offset_width()}x}",
            "sect": section_tag(sec),
            "block": "",
            "page off": "",
            "flags": "",
            "enc": "",
            "size": "",
        }
        style = "records--other"
        if kind == RowKind.PAGE:
            bi = int(r.block[row])
            cells["block"] = ix.blocks[bi].name if 0 <= bi < len(ix.blocks) else "?"
            cells["page off"] = f"{int(r.page[row]) * (ix.page_size or 4096):#x}"
            cells["flags"] = (
                flag_names(flags)
                if not flags & MULTIFD_ROW
                else ("multifd page" if flags & RamFlag.PAGE else "multifd zero")
            )
            page_kind = page_kind_of(flags)
            cells["enc"] = encoding_word(flags)
            cells["size"] = str(self.payload_size(row))
            if page_kind is not None:
                style = f"records--{page_kind.name.lower()}"
        elif kind in (RowKind.MARKER, RowKind.MEM_SIZE):
            cells["flags"] = flag_names(flags)
            style = "records--marker"
            if kind == RowKind.MEM_SIZE:
                cells["block"] = f"{len(ix.blocks)} blocks"
        elif kind == RowKind.SECTION:
            typ = SectionType(flags)
            cells["flags"] = f"{typ.name} section"
            cells["block"] = sec.idstr if sec is not None else ""
            style = "records--section"
        elif kind == RowKind.COMMAND:
            cells["flags"] = f"CMD {command_name(flags)}"
            style = "records--section"
        elif kind == RowKind.BLOCK:
            cells["flags"] = block_flag_names(flags)
            cells["block"] = "block migration"
        elif kind == RowKind.DIRTY_BITMAP:
            cells["flags"] = dirty_bitmap_flag_names(flags)
            cells["block"] = "dirty bitmap"
        else:
            cells["flags"] = kind.name.replace("_", " ").lower()
            if kind == RowKind.DEVICE and sec is not None:
                cells["block"] = sec.idstr
        text = Text(style=self.get_component_rich_style(style))
        for title, w in self.columns(width):
            value = cells[title]
            if title == "flags" and len(value) > w:
                value = value.replace("CONTINUE", "CONT")
            if len(value) > w:
                value = value[: w - 1] + "…"
            text.append((value.rjust(w) if title == "size" else value.ljust(w)) + " ")
        return text
