"""Reading mapped-ram's MEM_SIZE (QEMU 9.0+ file: migration): per block a
MappedRamBlock event (entry, header, bitmap), then its page region passed by as
MappedRamPages views (never copied, so holes of an mmap'd file are never
touched), then the next entry; RamBlockList last.  The header rules are in
mappedram.py."""

from __future__ import annotations

from construct import ConstructError

from ..errors import StreamError
from ..errors import TruncatedStream
from ..events import MappedRamBlock
from ..events import MappedRamPages
from ..events import RamBlock
from ..events import RamBlockList
from ..wire import grammar as g
from .input import NeedData
from .mappedram import MappedRamList
from .mappedram import check_mapped_ram_header
from .state import DecoderState


class MappedRamReader(DecoderState):
    """Reads a mapped-ram block list with its page regions."""

    def _mapped_mem_size(self, off: int, total: int):
        self._mapped = MappedRamList(off, total)
        self._state = "mapped_block"
        self._elem = self._pos  # restart point after the MEM_SIZE header
        return self._st_mapped_block()

    def _st_mapped_block(self):
        mr = self._mapped
        if mr.left <= 0:
            self._state = "ram"
            return RamBlockList(mr.offset, mr.total, tuple(mr.blocks))
        off = self.offset
        ignore_shared = bool(self.configuration and "x-ignore-shared" in self.configuration.capabilities)
        try:
            entry = self._construct(
                g.MappedRamBlockEntry,
                512,
                page_size=self.page_size,
                ignore_shared=ignore_shared,
                postcopy_hugepages=False,
            )
        except ConstructError as exc:
            raise StreamError(f"malformed mapped-ram block entry: {exc}", off, section="ram") from exc
        name, used, addr, hdr = entry.idstr, entry.used_length, entry.addr, entry.mapped_ram
        bitmap_size = check_mapped_ram_header(name, used, hdr, self.offset, self.page_size, mr.left, off)
        bitmap = b""
        if hdr.pages_offset:
            gap = hdr.bitmap_offset - self.offset
            self._need(gap + bitmap_size)
            bitmap = bytes(self._buf[self._pos + gap : self._pos + gap + bitmap_size])
            self._pos += gap + bitmap_size
        self.blocks[name] = RamBlock(name, used, None, addr)
        mr.blocks.append(self.blocks[name])
        mr.left -= used
        mr.region = (name, hdr.pages_offset, hdr.pages_offset + used) if hdr.pages_offset else None
        self._state = "mapped_skip" if mr.region else "mapped_block"
        return MappedRamBlock(
            off, name, used, addr, hdr.version, hdr.page_size, hdr.bitmap_offset, hdr.pages_offset, bitmap
        )

    def _mapped_input(self) -> int:
        """Bytes available at _pos, switching to the fed chunk when the joined
        buffer is used up; raises NeedData (keeping progress) when there are none."""
        if self._pos >= len(self._buf):
            self._rebase()
        avail = len(self._buf) - self._pos
        if avail <= 0:
            if self._eof:
                region = self._mapped.region if self._mapped is not None else None
                name = region[0] if region else None
                raise TruncatedStream(
                    "stream ends inside a mapped-ram page region", self.offset, section="ram", block=name
                )
            self._elem = self._pos
            raise NeedData
        return avail

    def _st_mapped_skip(self):
        # From the end of the bitmap to pages_offset: alignment padding, skipped unread.
        target = self._mapped.region[1]
        while self.offset < target:
            avail = self._mapped_input()
            self._pos += min(target - self.offset, avail)
        self._state = "mapped_pages"
        return self._st_mapped_pages()

    def _st_mapped_pages(self):
        name, start, end = self._mapped.region
        off = self.offset
        if off >= end:
            self._state = "mapped_block"
            return self._st_mapped_block()
        avail = self._mapped_input()
        ps = self.page_size
        n = min(avail, end - off)
        if off + n < end:
            n -= (off + n - start) % ps  # whole pages only
            if n <= 0:
                self._elem = self._pos
                try:
                    self._need(ps)  # a page split between two chunks: join just that page
                except TruncatedStream as exc:
                    raise TruncatedStream(
                        "stream ends inside a mapped-ram page region", off, section="ram", block=name, addr=off - start
                    ) from exc
                n = ps
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return MappedRamPages(off, name, off - start, data)
