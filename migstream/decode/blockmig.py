"""Block migration records (the "block" section, migration/block.c block_load)."""

from __future__ import annotations

from ..errors import StreamError
from ..events import BlockRecord
from ..wire import grammar as g
from ..wire.fastpath import BLOCK_HEADER
from .state import DecoderState


class BlockMigrationReader(DecoderState):
    """Reads one block-migration record (memory stays flat: record by record)."""

    def _st_block(self):
        sec = self._section
        off = self.offset
        value_flags = self._unpack(BLOCK_HEADER)
        flags = value_flags & ((1 << g.BLOCK_SECTOR_BITS) - 1)
        value = value_flags >> g.BLOCK_SECTOR_BITS
        device = None
        data = memoryview(b"")
        if flags & g.BlockFlag.DEVICE_BLOCK:
            device = self._idstr()
            if not flags & g.BlockFlag.ZERO_BLOCK:
                self._need(g.BLOCK_CHUNK)
                data = self._buf[self._pos : self._pos + g.BLOCK_CHUNK]
                self._pos += g.BLOCK_CHUNK
        elif not flags & (g.BlockFlag.PROGRESS | g.BlockFlag.EOS):
            raise StreamError(f"Unknown block migration flags: {flags:#x}", off, section=sec.idstr)
        if flags & g.BlockFlag.EOS:
            self._state = "footer"
        return BlockRecord(off, sec.section_id, flags, value, device, data)
