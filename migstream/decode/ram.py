"""The RAM section's records (migration/ram.c ram_load_precopy): MEM_SIZE block
lists, page records with their framing checks, EOS and the other markers, and
runs of same-kind CONTINUE records walked in bulk (wire/fastpath.py)."""

from __future__ import annotations

import struct

from construct import ConstructError

from ..codecs.zlibpage import compress_bound
from ..errors import StreamError
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlock
from ..events import RamBlockList
from ..events import RamMarker
from ..wire import grammar as g
from ..wire.fastpath import RAM_HEADER
from ..wire.fastpath import RamPlans
from ..wire.fastpath import RunWalker
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_EOS
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_XBZRLE
from ..wire.grammar import RAM_ZERO
from ..wire.limits import MAX_BLOCK_LENGTH
from ..wire.limits import MAX_BLOCK_LIST
from ..wire.limits import MAX_PAGE_SIZE
from ..wire.limits import MAX_RAM_BLOCKS
from ..wire.limits import MIN_PAGE_SIZE
from ..wire.pagesize import page_size_for
from .pages import apply_xbzrle
from .state import DecoderState

RamFlag = g.RamFlag
ST = g.SectionType


# Plain ints for the hot path (enum arithmetic costs microseconds).
_NOT_CONTINUE = ~RAM_CONTINUE
_PAGE_KINDS = frozenset(int(k) for k in g.PAGE_KINDS)
_RUN_KINDS = frozenset({RAM_PAGE, RAM_ZERO})
_XBZRLE_LENGTH = struct.Struct(">H")
_COMPRESS_LENGTH = struct.Struct(">I")


class RamReader(DecoderState):
    """Reads one record of the RAM section (or a run of them)."""

    def _enter_ram(self, off: int) -> None:
        if self._plans is not None:
            return
        if self.page_size is None and self.configuration and self.configuration.target_page_bits:
            self.page_size = 1 << self.configuration.target_page_bits
            self.page_size_source = "configuration"
        if self.page_size is None:
            size, arch = page_size_for(self.configuration.machine if self.configuration else None)
            if size:
                self.page_size, self.page_size_source = size, f"machine type ({arch})"
            else:
                self.page_size, self.page_size_source = 4096, "default"
                self.warnings.append((off, "target page size unknown; assuming 4096 (use --page-size)"))
        if self.page_size & (self.page_size - 1) or not MIN_PAGE_SIZE <= self.page_size <= MAX_PAGE_SIZE:
            raise StreamError(f"unusable target page size {self.page_size}", off, section="ram")
        self._plans = RamPlans.for_page_size(self.page_size)
        self._walker = RunWalker(self._plans)
        self._mask = self.page_size - 1
        self._page_bytes = self.page_size

    def _st_ram(self):
        buf = self._buf
        pos = self._pos
        off = self._base + pos
        if pos + RAM_HEADER.size <= len(buf) and not self._packages:
            (hdr,) = RAM_HEADER.unpack_from(buf, pos)
            self._pos = pos + RAM_HEADER.size
        else:
            hdr = self._unpack(RAM_HEADER)
        flags = hdr & self._mask
        addr = hdr - flags
        kind = flags & _NOT_CONTINUE
        if kind in _PAGE_KINDS:
            return self._page_record(off, hdr, flags, addr, kind)
        if kind == RAM_EOS:
            self._state = "footer"
            if self._section_type == ST.END:
                self.ram_complete = True
            return RamMarker(off, flags)
        if kind == RamFlag.MEM_SIZE:
            if self._mapped_ram:
                return self._mapped_mem_size(off, addr)
            return self._mem_size(off, addr)
        if kind == RamFlag.MULTIFD_FLUSH:
            if self._mapped_ram:
                raise StreamError(f"Unexpected RAM flags: {flags}", off, section="ram")
            return RamMarker(off, flags)
        if kind == RamFlag.HOOK:
            if not self._allow_hook:
                raise StreamError(
                    "RAM_SAVE_FLAG_HOOK: RDMA hooks don't belong in a file or socket stream (use --rdma to accept)",
                    off,
                    section="ram",
                )
            return RamMarker(off, flags)
        raise StreamError(f"Unknown combination of migration flags: 0x{flags:x}", off, section="ram")

    def _mem_size(self, off: int, total: int) -> RamBlockList:
        ignore_shared = bool(self.configuration and "x-ignore-shared" in self.configuration.capabilities)
        self._pos = off - self._base
        try:
            rec = self._construct(
                g.RamRecord,
                MAX_BLOCK_LIST,
                page_size=self.page_size,
                ignore_shared=ignore_shared,
                postcopy_hugepages=self._postcopy_hugepages,
            )
        except ConstructError as exc:
            raise StreamError(f"malformed RAM block list: {exc}", off, section="ram") from exc
        blocks = tuple(RamBlock(b.idstr, b.used_length, b.page_size, b.addr) for b in (rec.payload.blocks or ()))
        if len(blocks) >= MAX_RAM_BLOCKS and sum(b.used_length for b in blocks) < total:
            raise StreamError(f"MEM_SIZE lists more than {MAX_RAM_BLOCKS} RAM blocks", off, section="ram")
        if sum(b.used_length for b in blocks) != total:
            raise StreamError(
                f"RAM block lengths add up to 0x{sum(b.used_length for b in blocks):x}, MEM_SIZE announced 0x{total:x}",
                off,
                section="ram",
            )
        for b in blocks:
            if b.used_length > MAX_BLOCK_LENGTH:
                raise StreamError(
                    f"RAM block {b.name} of 0x{b.used_length:x} bytes is implausibly large",
                    off,
                    section="ram",
                    block=b.name,
                )
            self.blocks[b.name] = b
        return RamBlockList(off, total, blocks)

    def _page_record(self, off: int, hdr: int, flags: int, addr: int, kind: int):
        if self._mapped_ram and kind != g.RamFlag.COMPRESS_PAGE:
            # ram_load_precopy: mapped-ram pages live in the block regions only.
            raise StreamError(f"Unexpected RAM flags: {flags}", off, section="ram", addr=addr)
        if flags & RAM_CONTINUE:
            block = self._last_block
            if block is None:
                raise StreamError(
                    "Ack, bad migration stream! (CONTINUE with no previous block)", off, section="ram", addr=addr
                )
            if kind in _RUN_KINDS and not self._packages:
                info = self.blocks.get(block)
                if addr < (info.used_length if info is not None else MAX_BLOCK_LENGTH):
                    run = self._scan_run(hdr, kind, block, addr)
                    if run is not None:
                        return run
        else:
            block = self._idstr()
            if self.blocks and block not in self.blocks:
                raise StreamError(f"Can't find block {block}", off, section="ram", block=block, addr=addr)
            self._last_block = block
        info = self.blocks.get(block)
        if info is not None and addr >= info.used_length:
            raise StreamError(f"Illegal RAM offset {addr:x}", off, section="ram", block=block, addr=addr)
        if info is None and addr >= MAX_BLOCK_LENGTH:
            # No MEM_SIZE told the block's length: no block is this large (limits.py).
            raise StreamError(
                f"Illegal RAM offset {addr:x} (beyond the largest block accepted, 0x{MAX_BLOCK_LENGTH:x})",
                off,
                section="ram",
                block=block,
                addr=addr,
            )
        ps = self._page_bytes
        payload_off = self.offset
        if kind == RAM_PAGE:
            n = ps
            self._need(n)
            data = self._buf[self._pos : self._pos + n]
            self._pos += n
            return PageRecord(off, flags, block, addr, payload_off, data)
        if kind == RAM_ZERO:
            fill = self._u8()
            return PageRecord(off, flags, block, addr, payload_off, memoryview(b""), fill)
        if kind == RAM_XBZRLE:
            encoding = self._u8()
            length = self._unpack(_XBZRLE_LENGTH)
            if encoding != g.XBZRLE_ENCODING_FLAG:
                raise StreamError(
                    "Failed to load XBZRLE page - wrong compression!", off, section="ram", block=block, addr=addr
                )
            if length > ps:
                raise StreamError(
                    f"Failed to load XBZRLE page - len overflow! ({length} > {ps})",
                    off,
                    section="ram",
                    block=block,
                    addr=addr,
                )
            self._need(length)
            data = self._buf[self._pos : self._pos + length]
            self._pos += length
            if self.check_deltas:
                # Decoded into a scratch page only to be checked (pages.py): a consumer
                # that applies every record turns this off, and checks as it applies.
                apply_xbzrle(bytearray(ps), data, off, block, addr)
            return PageRecord(off, flags, block, addr, payload_off, data, encoding=encoding)
        # COMPRESS_PAGE
        length = self._unpack(_COMPRESS_LENGTH)
        if length > compress_bound(ps):
            raise StreamError(f"Invalid compressed data length: {length}", off, section="ram", block=block, addr=addr)
        self._need(length)
        data = self._buf[self._pos : self._pos + length]
        self._pos += length
        return PageRecord(off, flags, block, addr, payload_off, data)

    def _scan_run(self, hdr: int, kind: int, block: str, addr: int):
        """Records that continue this one (PAGE or ZERO, CONTINUE, each for the next
        page) as one PageRun; None when fewer than two."""
        ps = self._page_bytes
        pos = self._pos - RAM_HEADER.size
        info = self.blocks.get(block)
        cap = ((info.used_length if info is not None else MAX_BLOCK_LENGTH) - addr) // ps
        n, p, starts, kinds = self._walker.walk(self._buf, pos, addr, cap)
        if n < 2:
            return None
        self._pos = p
        return PageRun(pos + self._base, block, addr, n, ps, self._buf[pos:p], starts, kinds)
