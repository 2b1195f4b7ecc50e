#!/usr/bin/env python3
"""Extract speed for multifd captures (main stream + channel files) and mapped-ram
files, on the committed QEMU 7.2/10 samples decompressed to plain files (mmap path).

    .venv/bin/python benchmarks/bench_multifd.py [--repeat N]
    .venv/bin/python benchmarks/bench_multifd.py --big IMAGE [--dir DIR]

Default: the committed samples (32 MiB guests, so fixed costs weigh in): per sample
the stream + channel bytes, best wall time of N extracts, MiB/s of input.
--big IMAGE: captures a VM whose RAM is IMAGE (e.g. benchmarks/make_image.py's
mixed-1g.img: 50 % zero, 30 % random, 20 % text pages) with QEMU 10 (samples/
get_qemu10.sh) as multifd nocomp / zstd (2 channels) and mapped-ram into DIR, then
times extract and reports MiB/s of guest RAM.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import zstandard  # noqa: E402

from migstream.tools.extract import extract  # noqa: E402

NAMES = [
    "x86-multifd-nocomp",
    "q10-multifd-nocomp",
    "x86-multifd-zlib",
    "q10-multifd-zlib",
    "x86-multifd-zstd",
    "q10-multifd-zstd",
    "q10-mapped-ram",
    "q10-mapped-ram-multifd",
    "q10-running",
]


def unzstd(src, dst):
    with open(src, "rb") as f, open(dst, "wb") as out:
        zstandard.ZstdDecompressor().copy_stream(f, out)


def capture_big(image, workdir, qemu10_root):
    """(name, main, channels) for multifd nocomp, zstd and mapped-ram captures of a VM
    whose RAM is ``image`` (never run)."""
    sys.path.insert(0, os.path.join(ROOT, "samples"))
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import make_samples as ms

    from support.qemu import Vm
    from support.qemu import image_ram_args
    from support.qemu import qemu10_wrapper

    size = os.path.getsize(image)
    binary = qemu10_wrapper(qemu10_root, workdir)
    args = [
        "-M",
        "pc",
        "-m",
        f"{size >> 20}M",
        *image_ram_args(image, size),
        "-S",
    ]
    runs = [
        ("big-multifd-nocomp", ["multifd"], ms.multifd("none"), "multi"),
        ("big-multifd-zstd", ["multifd"], ms.multifd("zstd"), "multi"),
        ("big-mapped-ram", ["mapped-ram"], {}, "file"),
    ]
    out = []
    for name, caps, params, transport in runs:
        q = Vm(binary, args, workdir, name)
        try:
            s = {
                "name": name,
                "caps": caps,
                "params": dict(params, **{"max-bandwidth": 1 << 40}),
                "transport": transport,
            }
            _uri, main, chans, _final, _notes = ms.migrate_once(q, s, workdir, caps, "10")
        finally:
            q.close()
        out.append((name, main, chans))
    return out, size


def best_extract(main, chans, out, repeat):
    """The shortest wall time of ``repeat`` extracts of a capture into a fresh ``out``."""
    best = None
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        r = extract(main, out, channels=chans)
        dt = time.perf_counter() - t
        assert r.error is None, r.error
        best = dt if best is None else min(best, dt)
    return best


def run_big(a):
    os.makedirs(a.dir, exist_ok=True)
    caps, size = capture_big(os.path.abspath(a.big), a.dir, a.qemu10)
    print(f"{'capture':<22} {'input MiB':>10} {'best s':>8} {'guest MiB/s':>12}")
    for name, main, chans in caps:
        inp = os.path.getsize(main) + sum(os.path.getsize(c) for c in chans)
        best = best_extract(main, chans, os.path.join(a.dir, "out"), a.repeat)
        print(f"{name:<22} {inp / 2**20:>10.0f} {best:>8.2f} {size / 2**20 / best:>12.0f}")
    shutil.rmtree(os.path.join(a.dir, "out"), ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", help="guest RAM image to capture with QEMU 10 (see the docstring)")
    ap.add_argument("--dir", default="/var/tmp/migstream-bench-multifd")
    ap.add_argument("--qemu10", default="/var/tmp/qemu10")
    a = ap.parse_args()
    if a.big:
        return run_big(a)
    samples = {s["name"]: s for s in json.load(open(os.path.join(ROOT, "samples", "samples.json")))}
    work = tempfile.mkdtemp(prefix="bench-multifd-")
    try:
        print(f"{'sample':<26} {'stream+channels':>16} {'best s':>8} {'MiB/s of stream':>16}")
        for name in NAMES:
            s = samples[name]
            main_path = os.path.join(work, name + ".mig")
            unzstd(os.path.join(ROOT, "samples", s["stream"]), main_path)
            chans = []
            for c in s.get("channels", ()):
                p = os.path.join(work, c["file"].removesuffix(".zst"))
                unzstd(os.path.join(ROOT, "samples", c["file"]), p)
                chans.append(p)
            size = os.path.getsize(main_path) + sum(os.path.getsize(c) for c in chans)
            best = best_extract(main_path, chans, os.path.join(work, "out"), a.repeat)
            print(f"{name:<26} {size / 2**20:>13.1f} MiB {best:>8.3f} {size / 2**20 / best:>16.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
