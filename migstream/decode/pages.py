"""Applying one page record to a page buffer, with QEMU's loader semantics and its
error wording: the one place where a page's content is rebuilt or checked.

migration/ram.c ``ram_load_precopy``: ZERO fills the page with its byte
(``ram_handle_zero``), PAGE copies it, XBZRLE patches the page's current content in
place (``load_xbzrle`` -> ``xbzrle_decode_buffer``), COMPRESS_PAGE inflates one zlib
stream of exactly one page (7.2's ``decompress_data_with_multi_threads`` ->
``qemu_uncompress_data``).  Framing checks that need no page (XBZRLE encoding byte
and length, COMPRESS_PAGE length) are made by the decoder (ram.py).

An XBZRLE delta is decoded once: by the decoder into a scratch page (to check it)
unless its ``check_deltas`` is off because whoever consumes the events applies every
page record with ``apply_page`` (image/ramimage.py in ``extract``), which makes the
same check with the same message and offset.
"""

from __future__ import annotations

import zlib

from ..codecs.xbzrle import xbzrle_decode_into
from ..codecs.zlibpage import inflate_page
from ..errors import StreamError
from ..errors import XbzrleError
from ..events import PageRecord
from ..wire.grammar import RAM_COMPRESS_PAGE
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_XBZRLE
from ..wire.grammar import RAM_ZERO


def apply_xbzrle(page, delta, offset: int, block: str | None = None, addr: int | None = None) -> None:
    """Patch ``page`` (writable, one page) with an XBZRLE ``delta`` in place; a delta
    xbzrle_decode_buffer rejects raises StreamError at the record's ``offset``."""
    try:
        xbzrle_decode_into(delta, page)
    except XbzrleError as exc:
        raise StreamError(
            f"Failed to load XBZRLE page - decode error! ({exc})", offset, section="ram", block=block, addr=addr
        ) from exc


def inflate_checked(data, page_size: int, offset: int, block: str | None = None, addr: int | None = None) -> bytes:
    """The page a COMPRESS_PAGE payload inflates to; StreamError when it is not a
    complete zlib stream of exactly one page."""
    try:
        return inflate_page(data, page_size)
    except zlib.error as exc:
        raise StreamError(f"decompress data failed: {exc}", offset, section="ram", block=block, addr=addr) from exc


def apply_page(
    page, kind: int, data, fill: int = 0, *, offset: int, block: str | None = None, addr: int | None = None
) -> None:
    """Apply one page record (its kind without CONTINUE, payload and fill byte) to
    ``page``, a writable buffer of one page holding the destination's current
    content.  Other kinds leave the page alone."""
    if kind == RAM_PAGE:
        page[:] = data
    elif kind == RAM_ZERO:
        page[:] = bytes([fill]) * len(page)
    elif kind == RAM_XBZRLE:
        apply_xbzrle(page, data, offset, block, addr)
    elif kind == RAM_COMPRESS_PAGE:
        page[:] = inflate_checked(data, len(page), offset, block, addr)


def check_page_record(rec: PageRecord, page_size: int) -> None:
    """Raise StreamError where the loader would reject ``rec``'s content (an XBZRLE
    delta or a COMPRESS_PAGE stream); PAGE and ZERO records always apply."""
    kind = rec.flags & ~RAM_CONTINUE
    if kind == RAM_XBZRLE or kind == RAM_COMPRESS_PAGE:
        apply_page(bytearray(page_size), kind, rec.data, offset=rec.offset, block=rec.block, addr=rec.addr)
