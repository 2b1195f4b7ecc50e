"""Which pages of each RAM block a stream sent at least once, to tell a complete
memory from one with pages missing.

Precopy starts with every page of every migratable block dirty (ram.c
ram_list_init_bitmaps), so a stream that reaches the RAM END section has sent each
page at least once, as ZERO, PAGE, XBZRLE, compressed or in a multifd packet.
Pages never sent mean the memory is not all there: typically the main channel of
a multifd migration read without its channel files (QEMU 7.2 leaves no marker of
multifd in the main channel; later versions send MULTIFD_FLUSH, which
``containers/multifd.with_channels`` notices itself).

Two things send no pages on purpose and are not counted as missing: blocks that
x-ignore-shared leaves out (the block list then carries addresses; such a block
has no page at all in the stream), and mapped-ram files (pages live at fixed file
offsets, not in records).  Blocks too large to track (hostile MEM_SIZE) are left
out rather than allocated.

One byte per page in a ``bytearray`` (no numpy: ``info``, ``validate`` and
``records`` start without importing it).
"""

from __future__ import annotations

from ..events import MappedRamBlock
from ..events import MultifdPacket
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlockList
from ..events import RamMarker
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_MULTIFD_FLUSH
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_ZERO

#: Pages tracked, all blocks together (one byte each): a 256 GiB guest at 4 KiB.
MAX_TRACKED_PAGES = 1 << 26
_ONES = b"\x01" * 4096  # a run's pages marked in one slice assignment


class PageCoverage:
    """Fed with the events of one stream (``add``); ``missing()`` then gives the
    pages never sent, per block.  ``page_size`` comes from the decoder once the
    block list is known (it is fixed there)."""

    def __init__(self, decoder) -> None:
        self._decoder = decoder
        self._sent: dict[str, bytearray] = {}
        self._ignore_shared = False
        self.tracked = True  # False: a mapped-ram file, or too many pages to track
        # What tells a multifd main channel read alone: MULTIFD_FLUSH records (QEMU 8.0+),
        # or (7.2) a main channel whose RAM records are ZERO pages only, every page with
        # data having gone to the channels.  A precopy stream of any real guest sends
        # some pages with data in its main channel (firmware at the least).
        self.multifd_flush = False
        self.zero_pages = 0
        self.data_pages = 0

    def add(self, ev) -> None:
        t = type(ev)
        if t is PageRun:
            if RAM_PAGE in ev.kinds:
                self.data_pages += 1
            else:
                self.zero_pages += ev.count
            sent = self._sent.get(ev.block)
            if sent is not None:
                first = ev.addr // ev.page_size
                n = max(0, min(ev.count, len(sent) - first))
                sent[first : first + n] = _ONES[:n] if n <= len(_ONES) else b"\x01" * n
        elif t is PageRecord:
            if ev.flags & ~RAM_CONTINUE == RAM_ZERO:
                self.zero_pages += 1
            else:
                self.data_pages += 1
            sent = self._sent.get(ev.block)
            if sent is not None and self._decoder.page_size:
                page = ev.addr // self._decoder.page_size
                if page < len(sent):
                    sent[page] = 1
        elif t is MultifdPacket:
            sent = self._sent.get(ev.block)
            if sent is not None:
                size, n = ev.page_size, len(sent)
                for offsets in (ev.normal, ev.zero):
                    for off in offsets:
                        page = int(off) // size
                        if page < n:
                            sent[page] = 1
        elif t is RamMarker:
            if ev.flags & ~RAM_CONTINUE == RAM_MULTIFD_FLUSH:
                self.multifd_flush = True
        elif t is RamBlockList:
            self._start(ev)
        elif t is MappedRamBlock:
            self.tracked = False

    def _start(self, ev: RamBlockList) -> None:
        page_size = self._decoder.page_size
        if not page_size or self._sent:
            return
        total = sum(-(-b.used_length // page_size) for b in ev.blocks)
        if total > MAX_TRACKED_PAGES:
            self.tracked = False
            return
        self._ignore_shared = any(b.addr is not None for b in ev.blocks)
        for b in ev.blocks:
            self._sent[b.name] = bytearray(-(-b.used_length // page_size))

    def missing(self) -> dict[str, int]:
        """Block name -> pages never sent (blocks with all pages sent left out)."""
        if not self.tracked:
            return {}
        out = {}
        for name, sent in self._sent.items():
            n = sent.count(0)
            if n and not (self._ignore_shared and n == len(sent)):
                out[name] = n
        return out


def multifd_main_alone(coverage: PageCoverage, missing: dict[str, int]) -> bool:
    """Pages never sent because this is the main channel of a multifd migration read
    without its channel files (the loader would wait for them: never valid), as opposed
    to pages a stream simply did not send (QEMU loads that: the destination keeps its
    own contents there)."""
    return bool(missing) and (coverage.multifd_flush or (coverage.data_pages == 0 and coverage.zero_pages > 0))


def incomplete_ram(missing: dict[str, int], needs_channels: bool) -> str | None:
    """The one-line verdict on pages never sent (None: none missing).  ``needs_channels``:
    they are missing because this is a multifd main channel read without its channel
    files (``multifd_main_alone``, and no --channel given): the line says so."""
    if not missing:
        return None
    total = sum(missing.values())
    blocks = ", ".join(f"{name} {n}" for name, n in missing.items())
    hint = "; the main channel of a multifd migration needs its channel files (--channel)" if needs_channels else ""
    return f"RAM incomplete: {total} pages never sent ({blocks}){hint}"
