"""How each page was last sent: the one implementation of page state.

A page's state is a ``PageKind`` byte (tools/vocabulary.py); ``STATE_OF_FLAGS``
turns a RAM record's flags into it.  Two users keep such bytes:

- ``PageStateHistory``, the TUI index's page map as of any row: one byte per page
  of every mapped block, with a copy (checkpoint) every K rows, so the state as of
  row N is one copy plus a vectorised replay of at most K rows;
- ``PageMaps``, the HTML report's maps, fed with events: one byte per page (or per
  bucket of pages when a block is huge, so memory stays bounded whatever lengths a
  stream announces), and ``IterationStat`` counts of pages and bytes per kind for
  each RAM section (START, every PART, END).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from dataclasses import field

import numpy as np

from ...events import PageRecord
from ...events import PageRun
from ...events import RamBlockList
from ...events import SectionStart
from ...wire.grammar import RAM_CONTINUE
from ...wire.grammar import RAM_PAGE
from ...wire.grammar import RAM_ZERO
from ...wire.grammar import SectionType
from ..vocabulary import PAGE_KIND_OF_FLAG
from ..vocabulary import PageKind
from .rows import RowKind

#: Rows for pages that came in multifd packets (channel files) carry RAM kind bits
#: plus this bit, above every real RAM flag (those stay below 0x400).
MULTIFD_ROW = 0x400

#: RAM record flags (CONTINUE or not, MULTIFD_ROW or not) -> PageKind; other
#: flags (markers) -> NEVER.
STATE_OF_FLAGS = np.zeros(0x800, dtype=np.uint8)
for _flag, _kind in PAGE_KIND_OF_FLAG.items():
    STATE_OF_FLAGS[int(_flag)] = STATE_OF_FLAGS[int(_flag) | RAM_CONTINUE] = _kind
STATE_OF_FLAGS[MULTIFD_ROW | RAM_PAGE] = PageKind.MULTIFD
STATE_OF_FLAGS[MULTIFD_ROW | RAM_ZERO] = PageKind.ZERO
#: The same for one byte of ``PageRun.kinds``, for ``bytes.translate``.
_STATE_OF_BYTE = STATE_OF_FLAGS[:256].tobytes()

MIN_CHECKPOINT_ROWS = 65536
#: Pages with a page map, all blocks together (one byte each, plus checkpoints):
#: 64 Mi pages is a 256 GiB guest at 4 KiB.  Blocks past it (or a hostile
#: MEM_SIZE) get no page map rather than a huge allocation.
MAX_MAPPED_PAGES = 1 << 26


def set_last_wins(state: np.ndarray, slots: np.ndarray, values: np.ndarray) -> None:
    """``state[slots] = values`` where a slot written twice keeps its last value."""
    rev = slots[::-1]
    uniq, first = np.unique(rev, return_index=True)
    state[uniq] = values[::-1][first]


class PageStateHistory:
    """The index's page state: ``state`` (one byte per page, blocks one after the
    other from their ``base``) as the scan goes, and checkpoints of it by row."""

    def __init__(self, checkpoint_rows: int | None = None) -> None:
        self.state = np.zeros(0, dtype=np.uint8)
        self._every = checkpoint_rows
        self._lock = threading.Lock()
        self.checkpoints: list[tuple[int, np.ndarray]] = [(0, self.state.copy())]
        self._rows_since_checkpoint = 0
        self._cache: tuple[int, np.ndarray] | None = None

    @property
    def total_pages(self) -> int:
        return len(self.state)

    def grow(self, pages: list[int]) -> list[int]:
        """Room for blocks of ``pages`` pages each; their bases, in order."""
        bases = []
        base = len(self.state)
        for n in pages:
            bases.append(base)
            base += n
        if base > len(self.state):
            self.state = np.concatenate([self.state, np.zeros(base - len(self.state), np.uint8)])
        return bases

    def after_rows(self, n: int) -> bool:
        """``n`` more rows were scanned; True when a checkpoint is due."""
        self._rows_since_checkpoint += n
        every = self._every or max(MIN_CHECKPOINT_ROWS, len(self.state))
        return self._rows_since_checkpoint >= every

    def checkpoint(self, count: int) -> None:
        """Save the state as of ``count`` rows (rows [0, count) applied)."""
        with self._lock:
            last = self.checkpoints[-1]
            if last[0] == count and len(last[1]) == len(self.state):
                return
            self.checkpoints.append((count, self.state.copy()))
            self._rows_since_checkpoint = 0

    def forget_cache(self) -> None:
        self._cache = None

    def as_of(self, row: int, rows, blocks) -> np.ndarray:
        """How every page was last sent as of ``row`` inclusive (-1: before the
        first row), from ``rows`` (the index's Rows) and ``blocks`` (BlockInfo).
        A new array, cached for the last row asked."""
        cached = self._cache
        if cached is not None and cached[0] == row:
            return cached[1]
        with self._lock:
            cps = list(self.checkpoints)
        target = row + 1  # rows [0, target) applied
        i = max(k for k, (at, _) in enumerate(cps) if at <= target)
        at, snap = cps[i]
        state = np.zeros(self.total_pages, dtype=np.uint8)
        state[: len(snap)] = snap
        target = min(target, rows.count)
        if target > at:
            kind = rows.kind[at:target]
            sel = np.flatnonzero(kind == RowKind.PAGE)
            if len(sel):
                slots, ok = _slots(blocks, rows.block[at:target][sel], rows.page[at:target][sel])
                set_last_wins(state, slots, STATE_OF_FLAGS[rows.flags[at:target][sel]][ok])
        self._cache = (row, state)
        return state

    @staticmethod
    def changed(first: int, last: int, rows, blocks) -> np.ndarray:
        """State slots written by rows first..last inclusive."""
        last = min(last, rows.count - 1)
        if last < first:
            return np.zeros(0, np.int64)
        sel = np.flatnonzero(rows.kind[first : last + 1] == RowKind.PAGE)
        slots, _ok = _slots(blocks, rows.block[first : last + 1][sel], rows.page[first : last + 1][sel])
        return slots


def _slots(blocks, block: np.ndarray, page: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State slots of (block, page) pairs inside a mapped block, and which pairs those were."""
    bases = np.array([b.base for b in blocks] + [0], dtype=np.int64)
    limits = np.array([b.pages for b in blocks] + [0], dtype=np.int64)
    pages = page.astype(np.int64)
    ok = pages < limits[block]
    return (bases[block] + pages)[ok], ok


# --- the report's page maps, fed with events ---------------------------------------

MAX_CELLS = 1 << 20  # cells per block map; bigger blocks group pages into buckets


@dataclass
class BlockMap:
    name: str
    length: int
    page_size: int
    pages: int = 0
    bucket: int = 1  # pages per cell
    cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    @classmethod
    def for_block(cls, name: str, length: int, page_size: int) -> BlockMap:
        pages = -(-length // page_size)
        bucket = max(1, -(-pages // MAX_CELLS))
        return cls(name, length, page_size, pages, bucket, np.zeros(-(-pages // bucket), np.uint8))

    def counts(self) -> dict[PageKind, int]:
        """Cells by how they were last sent (pages when bucket is 1)."""
        c = np.bincount(self.cells, minlength=len(PageKind))
        return {k: int(c[k]) for k in PageKind}


@dataclass
class IterationStat:
    index: int  # 0 = START section, then one per PART, END last
    kind: str  # "START", "PART", "END"
    offset: int
    pages: dict[PageKind, int] = field(default_factory=dict)
    bytes: dict[PageKind, int] = field(default_factory=dict)

    def add(self, kind: PageKind, n: int, nbytes: int) -> None:
        self.pages[kind] = self.pages.get(kind, 0) + n
        self.bytes[kind] = self.bytes.get(kind, 0) + nbytes


class PageMaps:
    """Feed it every event (``add``); read ``blocks`` and ``iterations``."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.blocks: dict[str, BlockMap] = {}
        self.iterations: list[IterationStat] = []

    def _block(self, name: str, end: int) -> BlockMap:
        bm = self.blocks.get(name)
        if bm is None or end > bm.pages * self.page_size:
            # A block not announced by MEM_SIZE (or written past its length): grow.
            old = bm
            bm = BlockMap.for_block(name, max(end, old.length if old else 0), self.page_size)
            if old is not None:
                take = min(len(old.cells), len(bm.cells)) if old.bucket == bm.bucket else 0
                bm.cells[:take] = old.cells[:take]
            self.blocks[name] = bm
        return bm

    def _stat(self) -> IterationStat | None:
        return self.iterations[-1] if self.iterations else None

    def add(self, ev) -> None:
        t = type(ev)
        if t is PageRun:
            ps = ev.page_size
            bm = self._block(ev.block, ev.addr + ev.count * ps)
            codes = np.frombuffer(ev.kinds.translate(_STATE_OF_BYTE), np.uint8)
            first = ev.addr // ps
            if bm.bucket == 1:
                bm.cells[first : first + ev.count] = codes
            else:
                idx = np.arange(first, first + ev.count) // bm.bucket
                bm.cells[idx] = codes
            stat = self._stat()
            if stat is not None:
                pages = ev.count_of(RAM_PAGE)
                if pages:
                    stat.add(PageKind.RAW, pages, ev.record_bytes(RAM_PAGE))
                if ev.count - pages:
                    stat.add(PageKind.ZERO, ev.count - pages, ev.record_bytes(RAM_ZERO))
        elif t is PageRecord:
            bm = self._block(ev.block, ev.addr + self.page_size)
            code = PageKind(STATE_OF_FLAGS[ev.flags])
            bm.cells[(ev.addr // self.page_size) // bm.bucket] = code
            stat = self._stat()
            if stat is not None:
                stat.add(code, 1, ev.size)
        elif t is SectionStart:
            if ev.idstr == "ram" and ev.type in (SectionType.START, SectionType.PART, SectionType.END):
                self.iterations.append(IterationStat(len(self.iterations), ev.type.name, ev.offset))
        elif t is RamBlockList:
            for b in ev.blocks:
                if b.name not in self.blocks:
                    self.blocks[b.name] = BlockMap.for_block(b.name, b.used_length, self.page_size)
