#!/usr/bin/env python3
"""Stop 22's two speed changes, each switched on and off inside one process, alternated.

    python3 benchmarks/bench_switches.py [--rounds N] [--dir /var/tmp/migstream-bench]

bench_floor.py times whole processes against the machine's floor; this isolates what a
change did, without start-up and with nothing else varying:

* ``extract`` of the 540 MB stream: read ahead on a second thread (containers/readahead.py)
  against the mapped windows smaller files still use (``sources.READ_AHEAD_MIN`` raised);
* ``extract`` of the same stream compressed with zstd (made once, ``DIR/mixed-1g.mig.zst``):
  the decompression read ahead against decompressing on the main thread;
* ``encode`` of the 1 GiB image into a file: the compiled ``write_pages`` against the numpy
  path (``encoder.DIRECT``).

Each timed run starts after a ``sync`` (image opened or stream read to output closed).
Prints every run and the medians; the inputs are bench_floor.py's (made by it when missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_floor import DEFAULT_DIR  # noqa: E402
from bench_floor import prepare  # noqa: E402
from bench_floor import warm  # noqa: E402

from migstream.containers import sources  # noqa: E402
from migstream.encode import encoder  # noqa: E402
from migstream.encode.memimage import MemoryImage  # noqa: E402
from migstream.encode.sinks import FdSink  # noqa: E402
from migstream.tools.extract import extract  # noqa: E402


def _extract(stream: str, out: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    t = time.perf_counter()
    extract(stream, out)
    return time.perf_counter() - t


def extract_plain(stream: str, out: str, on: bool) -> float:
    saved = sources.READ_AHEAD_MIN
    sources.READ_AHEAD_MIN = saved if on else 1 << 62
    try:
        return _extract(stream, out)
    finally:
        sources.READ_AHEAD_MIN = saved


def extract_compressed(stream: str, out: str, on: bool) -> float:
    wrap = sources.StreamSource._wrap

    def on_main_thread(self, raw, head):
        wrap(self, raw, head)
        self._reads_ahead = False

    if not on:
        sources.StreamSource._wrap = on_main_thread  # type: ignore[method-assign]
    try:
        return _extract(stream, out)
    finally:
        sources.StreamSource._wrap = wrap  # type: ignore[method-assign]


def encode(image: str, out: str, on: bool) -> float:
    saved = encoder.DIRECT
    encoder.DIRECT = on
    try:
        if os.path.exists(out):
            os.unlink(out)
        os.sync()
        t = time.perf_counter()
        img = MemoryImage.open(image, block="pc.ram", machine="pc-i440fx-7.2")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sink = FdSink(fd)
            encoder.encode_stream([img], sink)
            sink.flush()
        finally:
            os.close(fd)
        return time.perf_counter() - t
    finally:
        encoder.DIRECT = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    image, stream, _floor, _sample = prepare(args.dir)
    compressed = stream + ".zst"
    if not os.path.exists(compressed):
        subprocess.run(["zstd", "-q", "-3", "-T2", stream, "-o", compressed], check=True)
    for path in (image, stream, compressed):
        warm(path)
    work = os.path.join(args.dir, "work")
    os.makedirs(work, exist_ok=True)
    jobs = {
        "extract (plain)": lambda on: extract_plain(stream, os.path.join(work, "switch-extract"), on),
        "extract (.zst)": lambda on: extract_compressed(compressed, os.path.join(work, "switch-extract"), on),
        "encode": lambda on: encode(image, os.path.join(work, "switch-encode.mig"), on),
    }
    print(f"load average at start: {' '.join(open('/proc/loadavg').read().split()[:3])}; {args.rounds} rounds")
    for name, job in jobs.items():
        times: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                times[on].append(job(on))
        for on in (True, False):
            runs = " ".join(f"{t:.3f}" for t in times[on])
            label = "new" if on else "before"
            print(f"{name:16s} {label:6s} median {statistics.median(times[on]):.3f} s  runs {runs}")
    print(f"load average at end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
