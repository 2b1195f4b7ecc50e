#!/usr/bin/env python3
"""What a fresh `migstream` process pays before it reads a byte: interpreter start,
then each layer of imports, best of N wall times (bytecode cache on, as on a user's
machine), and the whole `info` command on a tiny sample for comparison.

    python3 benchmarks/bench_startup.py [--python .venv/bin/python] [--repeat 15]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "samples", "x86-fresh-S.mig.zst")

STEPS = [
    ("interpreter (python -c pass)", "pass"),
    ("+ construct", "import construct"),
    ("+ typer", "import typer"),
    ("+ construct + typer", "import construct, typer"),
    ("+ numpy", "import numpy"),
    ("migstream (decoder, grammar, events)", "import migstream"),
    ("migstream.cli (what info/validate import)", "import migstream.cli"),
    ("migstream.cli + extract (numpy, RAM image)", "import migstream.cli, migstream.tools.extract"),
]


def best(argv, env, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([args.python, "-c", STEPS[-1][1]], env=env, check=True)  # write the caches
    for label, code in STEPS:
        print(f"{label:<46} {best([args.python, '-c', code], env, args.repeat) * 1000:6.1f} ms")
    if os.path.exists(SAMPLE):
        t = best([args.python, "-m", "migstream", "info", SAMPLE], env, args.repeat)
        print(f"{'migstream info on ' + os.path.basename(SAMPLE):<46} {t * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
