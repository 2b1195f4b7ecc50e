"""The words users see: how a page was sent (name, word, colour) and sizes.

One table, ``PAGE_KINDS``, says for every page kind the word ``info``, ``records``,
the HTML report and the TUI show, the key the JSON output has always used, and the
colour the report's charts and page maps and the TUI's page map, legend, timeline,
block list and record table paint it in (the TUI's CSS is generated from it, as
theme variables kept readable on each theme's background: tui/palette.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..wire.grammar import RamFlag


class PageKind(enum.IntEnum):
    """How a page was (last) sent.  The values are the bytes of the page-state
    maps; their order is the order of "most advanced" used when a map cell stands
    for several pages (never < zero < raw < xbzrle < compressed < multifd)."""

    NEVER = 0
    ZERO = 1
    RAW = 2
    XBZRLE = 3
    COMPRESSED = 4
    MULTIFD = 5  # pages on multifd channels (not in a main-channel stream)


@dataclass(frozen=True)
class PageKindWords:
    word: str  # what people read: info, records, report, TUI
    key: str  # the name in JSON output (info --json, records --json): stable
    colour: str  # "#rrggbb", readable on the TUI's dark map and the report's white page
    short: str  # the word in at most 7 characters, for the TUI's narrow columns


#: Every page kind, in PageKind order.  The JSON keys predate this table ("page"
#: for a raw page) and stay as they were; the word is "raw" everywhere people read.
PAGE_KINDS: dict[PageKind, PageKindWords] = {
    PageKind.NEVER: PageKindWords("never sent", "never sent", "#3a3a3a", "never"),
    PageKind.ZERO: PageKindWords("zero", "zero", "#5f87af", "zero"),
    PageKind.RAW: PageKindWords("raw", "page", "#5faf5f", "raw"),
    PageKind.XBZRLE: PageKindWords("xbzrle", "xbzrle", "#d7af00", "xbzrle"),
    PageKind.COMPRESSED: PageKindWords("compressed", "compressed", "#af5fd7", "compr"),
    PageKind.MULTIFD: PageKindWords("multifd", "multifd", "#00afaf", "multifd"),
}

#: The page kind of each RAM record kind (the RAM_SAVE_FLAG_* that carries a page).
PAGE_KIND_OF_FLAG: dict[RamFlag, PageKind] = {
    RamFlag.ZERO: PageKind.ZERO,
    RamFlag.PAGE: PageKind.RAW,
    RamFlag.XBZRLE: PageKind.XBZRLE,
    RamFlag.COMPRESS_PAGE: PageKind.COMPRESSED,
}

_WORD_OF_KEY = {k.key: k.word for k in PAGE_KINDS.values()}


def page_kind_word(key: str) -> str:
    """The word people read for a JSON record key (``"page"`` -> ``"raw"``); keys
    that are not page kinds (``multifd_page``, ``mapped_ram``) read as they are."""
    return _WORD_OF_KEY.get(key, key)


def page_kind_rgb(kind: PageKind) -> tuple[int, int, int]:
    """The kind's colour as (red, green, blue) bytes."""
    c = PAGE_KINDS[kind].colour
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: float, compact: bool = False) -> str:
    """``1536`` -> ``1.5 KiB`` (``compact``: ``1.5K``, for narrow TUI columns)."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            if compact:
                unit = unit[0]
                return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
