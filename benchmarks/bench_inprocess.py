"""Decoder throughput inside one process (no interpreter start-up or imports),
in GiB/s of guest RAM described: the `info` loop and the `extract` loop.

    python3 benchmarks/bench_inprocess.py [/var/tmp/migstream-bench] [--python-walk]

--python-walk times the decoder as installed without the compiled run walk.
"""

import os
import shutil
import sys
import tempfile

from benchlib import best_time

from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.tools.extract import extract
from migstream.tools.summary import StreamSummary

GUEST = 1 << 30


def info(path):
    with StreamSource(path) as src:
        summary = StreamSummary()
        for ev in iter_events(src, open_decoder(src)):
            summary.add(ev)


def main():
    args = [a for a in sys.argv[1:] if a != "--python-walk"]
    if "--python-walk" in sys.argv:
        from migstream.wire import fastpath

        fastpath._runscan = None
        print("run walk: Python")
    d = args[0] if args else "/var/tmp/migstream-bench"
    for name in ("zero-1g.mig", "raw-1g.mig", "mixed-1g.mig"):
        path = os.path.join(d, name)
        if not os.path.exists(path):
            print(f"{name}: missing (see benchmarks/README.md)")
            continue
        t = best_time(lambda path=path: info(path))
        print(f"info loop     {name:<14} {t:6.3f} s  {GUEST / t / 2**30:6.2f} GiB/s of guest RAM")
    path = os.path.join(d, "mixed-1g.mig")
    if os.path.exists(path):
        out = tempfile.mkdtemp(dir=d)

        def run():
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            extract(path, out)

        t = best_time(run)
        print(f"extract loop  mixed-1g.mig   {t:6.3f} s  {GUEST / t / 2**30:6.2f} GiB/s of guest RAM")
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
