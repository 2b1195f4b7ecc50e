"""XBZRLE page deltas (migration/xbzrle.c).

A delta is a sequence of (zero run, non-zero run) pairs; lengths are ULEB128 in one
or two bytes.  A zero run counts bytes left unchanged, a non-zero run is followed by
that many new bytes.  The delta is applied in place to the destination's current
copy of the page; the trailing unchanged run is not encoded.
"""

from __future__ import annotations

from ..errors import XbzrleError


def _uleb128(src, i: int, end: int) -> tuple[int, int]:
    # uleb128_decode_small: one or two bytes, value <= 0x3fff.
    b = src[i]
    if b < 0x80:
        return b, i + 1
    if i + 1 >= end:
        raise XbzrleError("truncated run length")
    b2 = src[i + 1]
    if b2 & 0x80:
        raise XbzrleError("run length longer than two bytes")
    return (b & 0x7F) | (b2 << 7), i + 2


def xbzrle_decode_into(src, page) -> int:
    """Apply the delta ``src`` to ``page`` (a writable buffer) in place.

    Follows xbzrle_decode_buffer's checks: at least two bytes must remain before
    each run length, only the first zero run may be 0, a non-zero run may not be 0,
    and no run may pass the end of the page or of the delta.  Returns the number of
    page bytes covered.
    """
    slen = len(src)
    dlen = len(page)
    i = d = 0
    while i < slen:
        if slen - i < 2:
            raise XbzrleError(f"delta ends with a lone byte at delta offset {i}")
        run_start = i
        zrun, i = _uleb128(src, i, slen)
        if zrun == 0 and run_start != 0:
            raise XbzrleError(f"empty zero run at delta offset {run_start}")
        d += zrun
        if d > dlen:
            raise XbzrleError(f"zero run passes the end of the page (to {d})")
        if slen - i < 2:
            raise XbzrleError(f"delta ends without a data run at delta offset {i}")
        nzrun, i = _uleb128(src, i, slen)
        if nzrun == 0:
            raise XbzrleError(f"empty data run at delta offset {i}")
        if d + nzrun > dlen or i + nzrun > slen:
            raise XbzrleError(f"data run of {nzrun} bytes passes the end of the page or delta")
        page[d:d + nzrun] = src[i:i + nzrun]
        i += nzrun
        d += nzrun
    return d
