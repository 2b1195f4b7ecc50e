"""Per-page and per-iteration facts gathered from events, for reports and diffs.

``PageMaps`` keeps, for every RAM block, how each page was last sent (one byte
per page, or per bucket of pages when a block is huge, so memory stays bounded
whatever lengths a stream announces).  ``IterationStats`` counts pages and
bytes per encoding for each RAM section (START, every PART, END).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..events import PageRecord, PageRun, RamBlockList, SectionStart
from ..wire.grammar import RamFlag, SectionType

NEVER, ZERO, PAGE, XBZRLE, COMPRESSED, MULTIFD = range(6)
KIND_NAMES = ("never sent", "zero", "page", "xbzrle", "compressed", "multifd")
_CODE = {
    int(RamFlag.ZERO): ZERO,
    int(RamFlag.PAGE): PAGE,
    int(RamFlag.XBZRLE): XBZRLE,
    int(RamFlag.COMPRESS_PAGE): COMPRESSED,
}
_CODE_TABLE = bytes(_CODE.get(i, NEVER) for i in range(256))
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

    def counts(self) -> dict[str, int]:
        """Cells by how they were last sent (pages when bucket is 1)."""
        c = np.bincount(self.cells, minlength=len(KIND_NAMES))
        return {KIND_NAMES[i]: int(c[i]) for i in range(len(KIND_NAMES))}


@dataclass
class IterationStat:
    index: int  # 0 = START section, then one per PART, END last
    kind: str  # "START", "PART", "END"
    offset: int
    pages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int, nbytes: int) -> None:
        self.pages[name] = self.pages.get(name, 0) + n
        self.bytes[name] = self.bytes.get(name, 0) + nbytes


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
            codes = np.frombuffer(ev.kinds.translate(_CODE_TABLE), np.uint8)
            first = ev.addr // ps
            if bm.bucket == 1:
                bm.cells[first : first + ev.count] = codes
            else:
                idx = np.arange(first, first + ev.count) // bm.bucket
                bm.cells[idx] = codes
            stat = self._stat()
            if stat is not None:
                pages = ev.count_of(int(RamFlag.PAGE))
                if pages:
                    stat.add("page", pages, ev.record_bytes(int(RamFlag.PAGE)))
                if ev.count - pages:
                    stat.add("zero", ev.count - pages, ev.record_bytes(int(RamFlag.ZERO)))
        elif t is PageRecord:
            bm = self._block(ev.block, ev.addr + self.page_size)
            code = _CODE.get(ev.flags & ~int(RamFlag.CONTINUE), NEVER)
            bm.cells[(ev.addr // self.page_size) // bm.bucket] = code
            stat = self._stat()
            if stat is not None:
                stat.add(KIND_NAMES[code], 1, ev.size)
        elif t is SectionStart:
            if ev.idstr == "ram" and ev.type in (SectionType.START, SectionType.PART, SectionType.END):
                self.iterations.append(IterationStat(len(self.iterations), ev.type.name, ev.offset))
        elif t is RamBlockList:
            for b in ev.blocks:
                if b.name not in self.blocks:
                    self.blocks[b.name] = BlockMap.for_block(b.name, b.used_length, self.page_size)
