"""Guest-RAM images with known page content, made without the encoder."""

from __future__ import annotations

import random

PAGE = 4096
TEXT_LINE = b"migstream encoder test page: the quick brown fox jumps over it.\n"


def page_of(kind: str, i: int, rnd: random.Random) -> bytes:
    if kind == "zero":
        return bytes(PAGE)
    if kind == "random":
        return rnd.randbytes(PAGE)
    if kind == "text":
        return (b"%08x " % i + TEXT_LINE * 64)[:PAGE]
    if kind == "fill":
        return bytes([1 + i % 255]) * PAGE  # same-byte but not zero: a PAGE record
    if kind == "sparse":
        p = bytearray(PAGE)
        p[(i * 8) % PAGE : (i * 8) % PAGE + 4] = i.to_bytes(4, "little") or b"\1"
        p[-1] = 1
        return bytes(p)
    raise ValueError(kind)


def mixed_image(size: int, *, seed: int = 1, zero: float = 0.5) -> bytearray:
    """Pages of all kinds; ``zero`` is the share of zero pages."""
    rnd = random.Random(seed)
    out = bytearray(size)
    kinds = ["random", "text", "fill", "sparse"]
    for i in range(size // PAGE):
        if rnd.random() < zero:
            continue
        out[i * PAGE : (i + 1) * PAGE] = page_of(kinds[rnd.randrange(len(kinds))], i, rnd)
    return out


def zero_page_count(img) -> int:
    z = bytes(PAGE)
    return sum(1 for o in range(0, len(img), PAGE) if img[o : o + PAGE] == z)


def dirty(img: bytearray, pages, how: str, seed: int = 0) -> bytearray:
    """A later image: ``pages`` changed by ``how``: "small" (a few bytes),
    "random" (whole page), "zero" (cleared)."""
    rnd = random.Random(seed)
    out = bytearray(img)
    for p in pages:
        o = p * PAGE
        if how == "small":
            for _ in range(4):
                k = rnd.randrange(PAGE)
                out[o + k] = (out[o + k] + 1 + rnd.randrange(200)) & 0xFF
        elif how == "random":
            out[o : o + PAGE] = rnd.randbytes(PAGE)
        elif how == "zero":
            out[o : o + PAGE] = bytes(PAGE)
        else:
            raise ValueError(how)
    return out
