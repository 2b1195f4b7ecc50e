#!/usr/bin/env python3
"""The same migstream commands run from two checkouts, interleaved, best of N: did a
change (a refactor, say) cost speed?

    python3 benchmarks/bench_checkouts.py OLD_DIR NEW_DIR [--repeat 5] [--stream FILE ...] [--json OUT]

Each DIR is a checkout whose extension is built in place (``pip install --no-deps
-e DIR`` builds it there); a command runs as ``python -m migstream`` with
``PYTHONPATH=DIR``, so the figures include start-up.  Old and new alternate run by
run, so machine noise hits both alike; compare the ratio, not the seconds.

Default inputs: every ``--stream`` (or the bundled x86-running, x86-compress and
x86-xbzrle-deltas samples) with ``info``, ``validate`` and ``extract``, plus
``--help`` for start-up.
Without ``--stream`` a 256 MiB mixed image (make_image.py) is encoded once, by the
NEW checkout, into a plain stream in the work directory, which gives a stream large
enough for the decode loops to dominate.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "samples")
DEFAULT_SAMPLES = ["x86-running.mig.zst", "x86-compress.mig.zst", "x86-xbzrle-deltas.mig.zst"]


def run_once(checkout: str, argv: list[str], workdir: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python -m migstream ARGV`` from ``checkout``."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "migstream", *argv],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def make_big_stream(new: str, workdir: str) -> str:
    image = os.path.join(workdir, "mixed-256m.img")
    stream = os.path.join(workdir, "mixed-256m.mig")
    subprocess.run([sys.executable, os.path.join(HERE, "make_image.py"), "--size", "256M", image], check=True)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(new))
    subprocess.run(
        [sys.executable, "-m", "migstream", "encode", image, "--block", "pc.ram", "--machine", "pc-i440fx-7.2"]
        + ["-o", stream],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    os.unlink(image)
    return stream


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stream", action="append", help="a stream to decode (repeatable)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="mgs-bench-")
    try:
        streams = args.stream or [os.path.abspath(os.path.join(SAMPLES, s)) for s in DEFAULT_SAMPLES]
        if not args.stream:
            streams.append(make_big_stream(args.new, workdir))
        jobs: list[tuple[str, list[str]]] = [("start-up (--help)", ["--help"])]
        for s in streams:
            name = os.path.basename(s)
            out = os.path.join(workdir, "out")
            jobs += [
                (f"info {name}", ["info", s]),
                (f"validate {name}", ["validate", s]),
                (f"extract {name}", ["extract", s, "-o", out]),
            ]
        rows = []
        print(f"{'job':48} {'old wall':>9} {'new wall':>9} {'ratio':>6} {'old cpu':>8} {'new cpu':>8}")
        for label, argv in jobs:
            best = {"old": [float("inf"), float("inf")], "new": [float("inf"), float("inf")]}
            for _ in range(args.repeat):
                for which, checkout in (("old", args.old), ("new", args.new)):
                    if "-o" in argv:  # extract writes into a directory of its own each time
                        shutil.rmtree(argv[argv.index("-o") + 1], ignore_errors=True)
                    wall, cpu = run_once(checkout, argv, workdir)
                    best[which] = [min(best[which][0], wall), min(best[which][1], cpu)]
            ratio = best["new"][0] / best["old"][0]
            rows.append({"job": label, "old": best["old"], "new": best["new"], "ratio_wall": ratio})
            print(
                f"{label:48} {best['old'][0]:9.3f} {best['new'][0]:9.3f} {ratio:6.2f} "
                f"{best['old'][1]:8.3f} {best['new'][1]:8.3f}"
            )
        load = os.getloadavg()
        print(f"best of {args.repeat}, seconds; load average at the end {load[0]:.2f}")
        if args.json:
            write_json(args.json, {"repeat": args.repeat, "rows": rows, "load_average_at_end": load[0]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
