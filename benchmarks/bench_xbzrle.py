"""XBZRLE encoder speed, in µs per 4 KiB page, on typical deltas.

    python3 benchmarks/bench_xbzrle.py

Cases (old page random or text-like; new = old with):
  unchanged      no change (QEMU skips the page)
  one-word       one dword incremented (the x86-xbzrle guest's usual write)
  few-words      8 scattered 8-byte changes
  medium         64 scattered 8-byte changes
  many           20 % of the bytes changed at random (~650 runs; still fits)
  dense          60 % of the bytes changed (overflow: QEMU sends a normal page)
  random         a fresh random page (overflow)
"""

from __future__ import annotations

import random
import time

import numpy as np

from migstream.codecs.xbzrle import xbzrle_decode_into
from migstream.codecs.xbzrle import xbzrle_encode

PAGE = 4096


def cases():
    rnd = random.Random(7)
    base = bytes(rnd.randbytes(PAGE))
    text = (b"migstream guest tick 0001 " * 200)[:PAGE]

    def poke(page, spans, width):
        p = bytearray(page)
        for _ in range(spans):
            at = rnd.randrange(0, PAGE - width)
            for i in range(at, at + width):
                p[i] ^= rnd.randrange(1, 256)
        return bytes(p)

    def fraction(page, f):
        a = np.frombuffer(page, np.uint8).copy()
        rng = np.random.default_rng(1)
        m = rng.random(PAGE) < f
        a[m] ^= rng.integers(1, 256, int(m.sum()), dtype=np.uint8)
        return a.tobytes()

    one = bytearray(text)
    one[1000:1004] = (int.from_bytes(one[1000:1004], "little") + 1).to_bytes(4, "little")
    yield "unchanged", text, text
    yield "one-word", text, bytes(one)
    yield "few-words", base, poke(base, 8, 8)
    yield "medium", base, poke(base, 64, 8)
    yield "many", base, fraction(base, 0.2)
    yield "dense", base, fraction(base, 0.6)
    yield "random", base, rnd.randbytes(PAGE)


def per_call(fn, *args, budget=0.3):
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn(*args)
        dt = time.perf_counter() - t
        if dt > budget:
            return dt / n
        n *= 2


def main():
    print(f"{'case':<10} {'delta bytes':>11} {'encode µs/page':>15} {'(numpy in)':>11} {'decode µs/page':>15}")
    for name, old, new in cases():
        delta = xbzrle_encode(old, new, PAGE)
        enc = min(per_call(xbzrle_encode, old, new, PAGE) for _ in range(3))
        a, b = np.frombuffer(old, np.uint8), np.frombuffer(new, np.uint8)
        enc_np = min(per_call(xbzrle_encode, a, b, PAGE) for _ in range(3))
        if delta:
            page = bytearray(old)
            dec = min(per_call(xbzrle_decode_into, delta, page) for _ in range(3))
            dec_s = f"{dec * 1e6:15.1f}"
        else:
            dec_s = f"{'-':>15}"
        size = "overflow" if delta is None else str(len(delta))
        print(f"{name:<10} {size:>11} {enc * 1e6:15.1f} {enc_np * 1e6:11.1f} {dec_s}")


if __name__ == "__main__":
    main()
