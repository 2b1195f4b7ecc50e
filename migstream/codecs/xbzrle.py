"""XBZRLE page deltas (migration/xbzrle.c).

A delta is a sequence of (zero run, non-zero run) pairs; lengths are ULEB128 in one
or two bytes.  A zero run counts bytes left unchanged, a non-zero run is followed by
that many new bytes.  The delta is applied in place to the destination's current
copy of the page; the trailing unchanged run is not encoded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import XbzrleError

if TYPE_CHECKING:
    import numpy as np


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
        page[d : d + nzrun] = src[i : i + nzrun]
        i += nzrun
        d += nzrun
    return d


# --- encoder -------------------------------------------------------------------------

# uleb128_encode_small (util/cutils.c) asserts the value fits in 14 bits.
ULEB128_SMALL_MAX = 0x3FFF

# Up to this many runs a Python loop over slices is cheaper than the numpy scatter,
# and up to this many changed bytes grouping them into runs in Python is cheaper
# than numpy calls.
_FEW_RUNS = 96
_FEW_CHANGED = 48

_ULEB1 = [bytes([v]) for v in range(0x80)]


def _uleb128_bytes(v: int) -> bytes:
    if v < 0x80:
        return _ULEB1[v]
    return bytes(((v & 0x7F) | 0x80, v >> 7))


def _as_bytes_array(buf) -> np.ndarray:
    import numpy as np  # the encoder only: decoding starts without numpy

    if isinstance(buf, np.ndarray):
        return buf.reshape(-1).view(np.uint8)
    return np.frombuffer(buf, dtype=np.uint8)


def xbzrle_encode(old, new, limit: int) -> bytes | None:
    """The XBZRLE delta that turns page ``old`` into page ``new``, exactly as
    QEMU's ``xbzrle_encode_buffer(old, new, len, dst, limit)`` writes it
    (migration/xbzrle.c; ram.c passes limit = TARGET_PAGE_SIZE).

    Returns ``b""`` when the page is unchanged (QEMU returns 0 and sends nothing),
    ``None`` exactly when QEMU returns -1 (overflow: it sends a normal page), else
    the delta.  ``old`` and ``new`` are any buffers (bytes, memoryview, numpy) of
    the same length.

    How QEMU splits the page: although it scans word-at-a-time for speed, both
    of its loops stop on the exact byte: a zero run ends at the first differing
    byte (the word loop only skips whole equal words, then bytes finish the job),
    and a non-zero run ends at the first equal byte (its word loop leaves as soon
    as the "has a zero byte" test on old ^ new fires, which is exact for whether a
    word holds an equal byte, then scans bytes).  So runs are the maximal
    stretches of equal / differing bytes; no short equal stretch is absorbed.

    Overflow: QEMU checks ``d + 2 > dlen`` before every run (including before
    scanning the trailing unchanged run, which it then does not emit), and
    ``d + nzrun_len > dlen`` before copying each run's bytes.  With D the length
    of the full delta that comes to: overflow iff D > limit, or the page ends
    with unchanged bytes and D + 2 > limit.  (The other checks are implied: a
    later run adds at least 3 bytes.)  Note the first check runs before the
    "unchanged" test, so with limit < 2 even an unchanged page overflows.
    """
    import numpy as np  # the encoder only: decoding starts without numpy

    a = _as_bytes_array(old)
    b = _as_bytes_array(new)
    n = len(a)
    if len(b) != n:
        raise ValueError(f"pages differ in length ({n} and {len(b)})")
    if n == 0:
        return b""
    changed_at = np.flatnonzero(a != b)
    changed = len(changed_at)
    if not changed:
        return None if limit < 2 else b""
    if changed + 2 > limit:
        return None  # every changed byte is copied, plus at least two length bytes
    src = new if isinstance(new, (bytes, bytearray)) else b.data
    if changed <= _FEW_CHANGED:
        # Typical small delta: group the positions in plain Python.
        starts, ends = [], []
        prev = -2
        for i in changed_at.tolist():
            if i != prev + 1:
                starts.append(i)
                ends.append(i)
            prev = i
            ends[-1] = i + 1
        return _encode_runs(starts, ends, src, n, limit)
    # A run ends where the next changed byte is not adjacent.
    cut = np.flatnonzero(changed_at[1:] - changed_at[:-1] != 1)
    if len(cut) < _FEW_RUNS:
        starts = [int(changed_at[0])] + changed_at[cut + 1].tolist()
        ends = (changed_at[cut] + 1).tolist() + [int(changed_at[-1]) + 1]
        return _encode_runs(starts, ends, src, n, limit)
    run_starts = np.empty(len(cut) + 1, np.int64)
    run_starts[0] = changed_at[0]
    run_starts[1:] = changed_at[cut + 1]
    run_ends = np.empty_like(run_starts)
    run_ends[:-1] = changed_at[cut] + 1
    run_ends[-1] = changed_at[-1] + 1
    nzrun = run_ends - run_starts
    zrun = run_starts.copy()
    zrun[1:] -= run_ends[:-1]
    if nzrun.max() > ULEB128_SMALL_MAX or zrun.max() > ULEB128_SMALL_MAX:
        raise _run_too_long(n)
    zlen = 1 + (zrun > 0x7F)
    nzlen = 1 + (nzrun > 0x7F)
    total = int(zlen.sum() + nzlen.sum()) + changed
    if total > limit or (run_ends[-1] != n and total + 2 > limit):
        return None
    return _assemble(b, changed_at, zrun, nzrun, zlen, nzlen, total)


def _run_too_long(n: int) -> ValueError:
    # QEMU would abort on the assertion in uleb128_encode_small.
    return ValueError(f"XBZRLE run longer than {ULEB128_SMALL_MAX} bytes (page of {n} bytes)")


def _encode_runs(starts: list, ends: list, src, n: int, limit: int) -> bytes | None:
    """A handful of runs: lengths and slices in plain Python."""
    parts: list = []
    total = 0
    prev_end = 0
    for s, e in zip(starts, ends):
        z, nz = s - prev_end, e - s
        if z > ULEB128_SMALL_MAX or nz > ULEB128_SMALL_MAX:
            raise _run_too_long(n)
        zl, nzl = _uleb128_bytes(z), _uleb128_bytes(nz)
        parts += (zl, nzl, src[s:e])
        total += len(zl) + len(nzl) + nz
        prev_end = e
    if total > limit or (prev_end != n and total + 2 > limit):
        return None
    return b"".join(parts)


def _assemble(new: np.ndarray, changed_at: np.ndarray, zrun, nzrun, zlen, nzlen, total: int) -> bytes:
    """Vectorised output for many runs: write the run lengths at their offsets,
    then drop the changed bytes, in order, into every other position."""
    import numpy as np  # the encoder only: decoding starts without numpy

    out = np.empty(total, dtype=np.uint8)
    is_length = np.zeros(total, dtype=bool)
    run_start = np.cumsum(zlen + nzlen + nzrun) - (zlen + nzlen + nzrun)
    nz_at = run_start + zlen
    for at, value, size in ((run_start, zrun, zlen), (nz_at, nzrun, nzlen)):
        long = size == 2
        out[at] = np.where(long, (value & 0x7F) | 0x80, value)
        is_length[at] = True
        out[at[long] + 1] = value[long] >> 7
        is_length[at[long] + 1] = True
    out[~is_length] = new[changed_at]
    return out.tobytes()
