"""Dirty-bitmap records (the "dirty-bitmap" section, migration/block-dirty-bitmap.c
dirty_bitmap_load)."""

from __future__ import annotations

from construct import ConstructError

from ..errors import StreamError
from ..events import DirtyBitmapRecord
from ..wire import grammar as g
from .state import DecoderState

#: The most a dirty-bitmap record takes before its bits: 4 flag bytes, two names,
#: granularity + bitmap flags or sector range + buffer size.
_DIRTY_BITMAP_HEAD_MAX = 4 + 2 * 256 + 13 + 20
_DIRTY_BITMAP_EOS = int(g.DirtyBitmapFlag.EOS)


class DirtyBitmapReader(DecoderState):
    """Reads one dirty-bitmap record."""

    def _st_dirty_bitmap(self):
        sec = self._section
        off = self.offset
        self._need(1)
        if self._buf[self._pos] == _DIRTY_BITMAP_EOS:
            # A lone EOS flags byte is a whole record: every iteration of a stopped VM
            # sends a PART with just that (thousands per stream), so skip the grammar.
            self._pos += 1
            self._state = "footer"
            return DirtyBitmapRecord(off, sec.section_id, _DIRTY_BITMAP_EOS)
        try:
            head = self._construct(g.DirtyBitmapRecordHead, _DIRTY_BITMAP_HEAD_MAX)
        except ConstructError as exc:
            raise StreamError(f"malformed dirty-bitmap record: {exc}", off, section=sec.idstr) from exc
        start, bits = head.start, head.bits
        if start is not None and start.bitmap_flags & g.DIRTY_BITMAP_START_RESERVED:
            raise StreamError(
                f"Unknown flags in migrated dirty bitmap header: {start.bitmap_flags:x}", off, section=sec.idstr
            )
        data = memoryview(b"")
        if bits is not None and bits.buffer_size is not None:
            if bits.buffer_size > g.DIRTY_BITMAP_MAX_BUFFER:
                raise StreamError(
                    f"Bitmap migration stream buffer allocation request is too large ({bits.buffer_size} bytes)",
                    off,
                    section=sec.idstr,
                )
            self._need(bits.buffer_size)
            data = self._buf[self._pos : self._pos + bits.buffer_size]
            self._pos += bits.buffer_size
        if head.flags & _DIRTY_BITMAP_EOS:
            self._state = "footer"
        return DirtyBitmapRecord(
            off,
            sec.section_id,
            head.flags,
            head.node,
            head.bitmap,
            start.granularity if start is not None else None,
            start.bitmap_flags if start is not None else None,
            bits.start_sector if bits is not None else None,
            bits.nr_sectors if bits is not None else None,
            data,
        )
