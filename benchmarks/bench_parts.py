#!/usr/bin/env python3
"""Where `extract` and `encode` spend their time, next to bench_floor.py's anchors.

    python3 benchmarks/bench_parts.py [--rounds N] [--dir /var/tmp/migstream-bench]

bench_floor.py says how far each job is from its anchor; this says what the gap is
made of.  Per round, alternated, each timed run after a ``sync`` (the same 1 GiB image
and QEMU stream as bench_floor.py):

* ``extract`` whole (the process); its **copies alone**: the stream decoded first
  (untimed, in this process), then only the compiled writer's pwritev calls of every
  bulk run into a fresh file, timed open to close, as write_floor.c is; the **write
  floor** (write_floor.c, sparse: the same pages written from the image in memory);
* ``encode`` whole; the **write of its output alone**: write_floor.c ``packed`` (the same data
  pages written back to back, one pwrite per run, from memory), and ``fallocated``
  (the same pages at their offsets into a file whose blocks were all allocated first:
  the price of the writes once allocation is out of the way, as encode's preallocation
  takes it out);
* start-up: ``migstream --version``, and the bare interpreter.

What the parts say: extract = its copies + decoding and the stream's mapping + start-up;
encode = max(building, writing) + start-up, on two cores.  Medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_floor import CHILD_ENV  # noqa: E402
from bench_floor import DEFAULT_DIR  # noqa: E402
from bench_floor import prepare  # noqa: E402
from bench_floor import remove  # noqa: E402
from bench_floor import timed  # noqa: E402
from bench_floor import warm  # noqa: E402

#: Decodes the stream (untimed), then times the compiled writer over every bulk run.
COPIES = """
import mmap, os, sys, time
from migstream.decode.decoder import StreamDecoder
from migstream.events import PageRun
from migstream.wire.fastpath import write_run
from migstream.wire.grammar import RAM_PAGE
stream, out = sys.argv[1:3]
f = open(stream, "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
m.madvise(getattr(mmap, "MADV_POPULATE_READ", 22))
d = StreamDecoder()
d.feed(memoryview(m))
d.feed(b"")
runs = [ev for ev in d if isinstance(ev, PageRun)]
size = max(r.addr + r.count * r.page_size for r in runs)
zero = bytes(runs[0].page_size)
os.sync()
t = time.perf_counter()
fd = os.open(out, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
os.ftruncate(fd, size)
for r in runs:
    write_run(fd, r.data, r.starts, r.kinds, RAM_PAGE, r.page_size, r.addr, 2, zero)
os.close(fd)
print(time.perf_counter() - t)
"""


def floor_way(floor: str, image: str, out: str, way: str) -> float:
    import json

    remove(out)
    os.sync()
    res = subprocess.run([floor, image, out, "4096", way], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout)["seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--migstream", default=f"{sys.executable} -m migstream")
    args = ap.parse_args()
    CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached (bench_floor.py)
    mig = args.migstream.split()
    image, stream, floor, _ = prepare(args.dir)
    work = os.path.join(args.dir, "work")
    os.makedirs(work, exist_ok=True)
    p = {k: os.path.join(work, "parts-" + k) for k in ("extract", "copies", "floor", "encode.mig", "packed")}
    warm(image)
    warm(stream)
    subprocess.run([*mig, "--version"], env=CHILD_ENV, capture_output=True, check=True)  # bytecode cache
    enc = ["encode", image, "--block", "pc.ram", "--machine", "pc-i440fx-7.2"]
    rows: dict[str, list[float]] = {}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} rounds")

    def note(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for r in range(args.rounds):
        remove(p["extract"])
        note("extract", timed([*mig, "extract", stream, "-o", p["extract"]])[0])
        remove(p["copies"])
        os.sync()
        out = subprocess.run(
            [sys.executable, "-c", COPIES, stream, p["copies"]], env=CHILD_ENV, check=True, capture_output=True
        )
        note("extract copies alone", float(out.stdout))
        note("write floor (sparse)", floor_way(floor, image, p["floor"], "sparse"))
        remove(p["encode.mig"])
        note("encode", timed([*mig, *enc, "-o", p["encode.mig"]])[0])
        note("write of the data alone (packed)", floor_way(floor, image, p["packed"], "packed"))
        note("the same pages, fallocated file", floor_way(floor, image, p["packed"], "fallocated"))
        note("migstream --version", min(timed([*mig, "--version"], sync=False)[0] for _ in range(3)))
        note("python -c pass", min(timed([sys.executable, "-c", "pass"], sync=False)[0] for _ in range(3)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items()), flush=True)
    for k in ("extract", "copies", "floor", "encode.mig", "packed"):
        remove(p[k])
    print()
    for k, v in rows.items():
        print(f"{k:<34} median {statistics.median(v):.3f} s  ({' '.join(f'{x:.3f}' for x in v)})")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
