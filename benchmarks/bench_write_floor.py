#!/usr/bin/env python3
"""The least time any `extract` can take on this machine: writing its output alone.

Compiles write_floor.c (gcc) and runs it on the mixed 1 GiB image: the non-zero pages
written as a sparse file (what `extract` writes), packed, and into a fallocated file.
Compare with bench_extract.py's goal: a fifth of analyze-migration.py's time.

    python3 benchmarks/bench_write_floor.py [--dir /var/tmp/migstream-bench] [--workdir DIR]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench"))
    ap.add_argument("--workdir", help="where the output file goes (default: DIR/work)")
    ap.add_argument("--image", help="RAM image (default: DIR/mixed-1g.img)")
    args = ap.parse_args()
    image = args.image or os.path.join(args.dir, "mixed-1g.img")
    if not os.path.exists(image):
        sys.exit(f"{image}: missing (benchmarks/make_image.py or capture_qemu.py all)")
    workdir = args.workdir or os.path.join(args.dir, "work")
    os.makedirs(workdir, exist_ok=True)
    exe = os.path.join(args.dir, "write_floor")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "write_floor.c")], check=True)
    out = subprocess.run(
        [exe, image, os.path.join(workdir, "write-floor.bin")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    for line in out.splitlines():
        row = json.loads(line)
        print(
            f"{row['way']:<11} {row['seconds']:7.3f} s  {row['bytes'] / row['seconds'] / 2**30:5.2f} GiB/s"
            f"  ({row['bytes'] >> 20} MiB in {row['writes']} writes)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
