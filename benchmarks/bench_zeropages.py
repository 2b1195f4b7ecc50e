"""Zero-page detection over a whole image, in GiB/s of guest RAM.

    python3 benchmarks/bench_zeropages.py [IMAGE]

IMAGE defaults to /var/tmp/migstream-bench/mixed-1g.img (50 % zero, 30 % random,
20 % text pages; make it with benchmarks/make_image.py).  The image is mmap'd and
read once beforehand so the page cache holds it; every method runs 3 times, best
time shown.  zero_page_mask (bitwise_or.reduce per row, 4 MiB chunks) is compared
with the alternatives tried.  The methods run interleaved, round after round, so
a busy machine hurts them alike.
"""

from __future__ import annotations

import mmap
import sys
import time

import numpy as np

from migstream.encode.zeropages import zero_page_mask

PAGE = 4096


def chunked(reduce_rows, pages_per_chunk=1024):
    def fn(buf):
        rows = np.frombuffer(buf, np.uint64).reshape(-1, PAGE // 8)
        mask = np.empty(len(rows), bool)
        for i in range(0, len(rows), pages_per_chunk):
            reduce_rows(rows[i : i + pages_per_chunk], mask[i : i + pages_per_chunk])
        return mask

    return fn


def by_any(c, out):
    np.logical_not(c.any(axis=1), out=out)


def by_max(c, out):
    np.equal(c.max(axis=1), 0, out=out)


def first_word_then_gather(c, out):
    np.equal(c[:, 0], 0, out=out)
    idx = np.flatnonzero(out)
    if len(idx):
        out[idx] = ~c[idx].any(axis=1)


def bytes_loop(buf):
    zero = bytes(PAGE)
    return np.fromiter((buf[i : i + PAGE] == zero for i in range(0, len(buf), PAGE)), bool)


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/migstream-bench/mixed-1g.img"
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(mm)
    np.frombuffer(mm, np.uint64).sum()  # warm the page cache and the mapping
    methods = [
        ("zero_page_mask", lambda b: zero_page_mask(b, PAGE)),
        ("any(axis=1)", chunked(by_any)),
        ("max(axis=1)", chunked(by_max)),
        ("first word + gather", chunked(first_word_then_gather)),
        ("bytes == ZERO loop", bytes_loop),
    ]
    times = {name: [] for name, _ in methods}
    want = None
    for _ in range(5):
        for name, fn in methods:
            t = time.perf_counter()
            mask = fn(mm)
            times[name].append(time.perf_counter() - t)
            if want is None:
                want = mask
            assert np.array_equal(mask, want), name
    print(f"{size / 2**30:.2f} GiB, {int(want.sum())} of {len(want)} pages zero")
    for name, ts in times.items():
        ts.sort()
        print(
            f"{name:22s} best {size / ts[0] / 2**30:6.2f} GiB/s   median {size / ts[len(ts) // 2] / 2**30:6.2f} GiB/s"
        )


if __name__ == "__main__":
    main()
