"""The record filter language, and where a search lands: the TUI's filter and
search as plain functions over the index (no Textual here, so they are tested
without a screen), and ``records --filter`` over the records as they stream.

A filter is words, all of which must match (kinds among themselves: any of them):
a RAM record kind (``zero``, ``raw``/``page``, ``xbzrle``, ``eos``, ``multifd``...),
``block:NAME``, ``iter:N`` (the N-th RAM section: 0 is START, then each PART, then
END) and ``offset:A-B`` (records starting at A up to B, B left out; hex with 0x or
decimal; ``offset:A-`` to the end; repeatable, any of them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tools.index import MULTIFD_ROW
from ..tools.index import RowKind
from ..tools.index import SectionInfo
from ..tools.index import StreamIndex
from ..tools.vocabulary import PAGE_KIND_OF_FLAG
from ..tools.vocabulary import PAGE_KINDS
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RamFlag

#: The record filter's and search's vocabulary: word -> RAM record kind.  The page
#: kinds answer to the words people read and to their JSON keys (tools/vocabulary.py:
#: "raw" and "page"); the other words are QEMU's flag names and short forms.
KIND_WORDS = {
    **{PAGE_KINDS[kind].word: flag for flag, kind in PAGE_KIND_OF_FLAG.items()},
    **{PAGE_KINDS[kind].key: flag for flag, kind in PAGE_KIND_OF_FLAG.items()},
    "compress": RamFlag.COMPRESS_PAGE,
    "compress_page": RamFlag.COMPRESS_PAGE,
    "eos": RamFlag.EOS,
    "mem_size": RamFlag.MEM_SIZE,
    "multifd_flush": RamFlag.MULTIFD_FLUSH,
    "flush": RamFlag.MULTIFD_FLUSH,
    "hook": RamFlag.HOOK,
    "continue": RamFlag.CONTINUE,
    "multifd": MULTIFD_ROW | RamFlag.PAGE,
}


class FilterError(ValueError):
    """A filter or search word the TUI cannot use; the message says which."""


@dataclass(frozen=True)
class FilterWords:
    """A parsed filter, before a block name is looked up in an index."""

    kinds: frozenset[int] = frozenset()
    block: str | None = None
    iteration: int | None = None
    offsets: tuple[tuple[int, int | None], ...] = ()


@dataclass
class RowFilter:
    """Which rows the table shows: RAM record kinds, one block, one iteration, offset ranges."""

    kinds: frozenset[int] = frozenset()
    block: int | None = None
    iteration: int | None = None
    offsets: tuple[tuple[int, int | None], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.kinds) or self.block is not None or self.iteration is not None or bool(self.offsets)

    def describe(self, index: StreamIndex) -> str:
        parts = [(RamFlag(k).name or f"{k:#x}").lower() for k in sorted(self.kinds)]
        if self.block is not None:
            parts.append(f"block:{index.blocks[self.block].name}")
        if self.iteration is not None:
            parts.append(f"iter:{self.iteration}")
        parts.extend(f"offset:{lo:#x}-" + (f"{hi:#x}" if hi is not None else "") for lo, hi in self.offsets)
        return " ".join(parts)


def search_kind(word: str) -> int:
    """The RAM record kind a search word names; FilterError if none."""
    kind = KIND_WORDS.get(word.lower())
    if kind is None:
        raise FilterError(f"unknown flag {word!r}; try: {', '.join(sorted(set(KIND_WORDS)))}")
    return int(kind)


def _offset(text: str, word: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FilterError(f"cannot filter on {word!r}: {text!r} is not an offset (e.g. 0x1000 or 4096)") from None


def parse_words(spec: str) -> FilterWords:
    """``"xbzrle zero block:pc.ram iter:3 offset:0x1000-0x2000"`` -> FilterWords."""
    kinds = set()
    block = None
    iteration = None
    offsets = []
    for word in spec.split():
        key, _, value = word.partition(":")
        if key == "block" and value:
            block = value
        elif key in ("iter", "iteration") and value.isdigit():
            iteration = int(value)
        elif key == "offset" and value:
            lo_text, dash, hi_text = value.partition("-")
            lo = _offset(lo_text, word) if lo_text else 0
            hi = _offset(hi_text, word) if hi_text else None
            if not dash:
                hi = lo + 1
            if hi is not None and hi <= lo:
                raise FilterError(f"cannot filter on {word!r}: the range is empty")
            offsets.append((lo, hi))
        elif word.lower() in KIND_WORDS:
            kinds.add(int(KIND_WORDS[word.lower()]))
        else:
            raise FilterError(f"cannot filter on {word!r}")
    return FilterWords(frozenset(kinds), block, iteration, tuple(offsets))


def parse_filter(spec: str, index: StreamIndex) -> RowFilter:
    """``"xbzrle zero block:pc.ram iter:3"`` -> RowFilter; empty: no filter."""
    words = parse_words(spec)
    block = None
    if words.block is not None:
        blk = index.block_named(words.block)
        if blk is None:
            raise FilterError(f"no RAM block {words.block!r}")
        block = blk.index
    return RowFilter(words.kinds, block, words.iteration, words.offsets)


def kind_matches(flags: np.ndarray, kinds: np.ndarray, kind: int) -> np.ndarray:
    """Which rows are RAM records of ``kind`` (CONTINUE: any record with that bit)."""
    ram = (kinds == RowKind.PAGE) | (kinds == RowKind.MARKER) | (kinds == RowKind.MEM_SIZE)
    if kind == RAM_CONTINUE:
        return ram & ((flags & RAM_CONTINUE) != 0)
    return ram & ((flags & ~np.uint16(RAM_CONTINUE)) == kind)


def section_last_row(index: StreamIndex, sec: SectionInfo) -> int:
    """The last row of a section (its end row, else the row before the next section)."""
    if sec.end_row > sec.row:
        return sec.end_row - 1
    nxt = [s.row for s in index.sections if s.row > sec.row]
    return (nxt[0] - 1) if nxt else index.count - 1


def filtered_rows(index: StreamIndex, row_filter: RowFilter) -> np.ndarray | None:
    """The row numbers the filter keeps, in order; None when it is off (all rows)."""
    f = row_filter
    if not f.active:
        return None
    r = index.rows()
    mask = np.ones(r.count, bool)
    if f.kinds:
        any_kind = np.zeros(r.count, bool)
        for k in f.kinds:
            any_kind |= kind_matches(r.flags, r.kind, k)
        mask &= any_kind
    if f.block is not None:
        mask &= r.block == f.block
    if f.offsets:
        inside = np.zeros(r.count, bool)
        for lo, hi in f.offsets:
            inside |= (r.offset >= lo) if hi is None else ((r.offset >= lo) & (r.offset < hi))
        mask &= inside
    if f.iteration is not None:
        ram = [index.sections[i] for i in index.ram_sections]
        if f.iteration < len(ram):
            sec = ram[f.iteration]
            lo, hi = sec.row, section_last_row(index, sec) + 1
            inside = np.zeros(r.count, bool)
            inside[lo:hi] = True
            mask &= inside
        else:
            mask[:] = False
    return np.flatnonzero(mask)


def next_match(index: StreamIndex, kind: int, row: int, direction: int) -> int | None:
    """The next (direction > 0) or previous RAM record of ``kind`` from ``row``."""
    r = index.rows()
    hits = np.flatnonzero(kind_matches(r.flags, r.kind, kind))
    if direction > 0:
        hits = hits[hits > row]
        return int(hits[0]) if len(hits) else None
    hits = hits[hits < row]
    return int(hits[-1]) if len(hits) else None


def flag_kind_matches(flags: int, kind: int) -> bool:
    """``kind_matches`` for one RAM record's flags."""
    if kind == RAM_CONTINUE:
        return bool(flags & RAM_CONTINUE)
    return (flags & ~RAM_CONTINUE) == kind


class RecordFilter:
    """``records --filter``: the same words over the records as they stream.  Rows
    are ``records``' dicts; ``see_section`` is told of every section start so that
    ``iter:N`` knows where it is."""

    def __init__(self, words: FilterWords) -> None:
        self.words = words
        self._ram_sections = -1  # index of the current RAM section (START is 0)
        self._in_ram = False

    def see_section(self, idstr: str) -> None:
        self._in_ram = idstr == "ram"
        if self._in_ram:
            self._ram_sections += 1

    def keep(self, row: dict) -> bool:
        w = self.words
        if w.offsets and not any(row["offset"] >= lo and (hi is None or row["offset"] < hi) for lo, hi in w.offsets):
            return False
        if w.block is not None and row.get("block") != w.block:
            return False
        if w.iteration is not None and not (self._in_ram and self._ram_sections == w.iteration):
            return False
        if w.kinds:
            event = row["event"]
            if event == "multifd_packet":
                return (MULTIFD_ROW | RamFlag.PAGE) in w.kinds
            if event == "mem_size":
                return int(RamFlag.MEM_SIZE) in w.kinds
            if event not in ("page", "ram"):
                return False
            return any(flag_kind_matches(row["flags"], k) for k in w.kinds)
        return True
