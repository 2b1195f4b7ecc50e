#!/usr/bin/env python3
"""``migstream dump`` speed: a mostly-zero 64 GiB guest (goal: under 2 s) and a 1 GiB
mixed guest against ``extract`` on the same stream (goal: within 1.3x), with the
peak memory (RSS) of each command.

The 64 GiB stream is synthetic, made once by migstream's encoder (pc-i440fx-7.2,
as QEMU 7.2 sends it: one ZERO record per zero page, 151 MB) from a sparse image: an
anonymous private mapping that is never written except for 64 data pages, so it
costs no memory.  The 1 GiB stream is the real QEMU 7.2 capture of the mixed image
that bench_extract.py uses (benchmarks/capture_qemu.py makes it).  Runs are
subprocesses (as users run them), extract and dump alternated, best of N.

    python3 benchmarks/bench_dump.py [--workdir /var/tmp/migstream-bench] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import subprocess
import sys
import time

from benchlib import finish_report

GiB = 1 << 30
MAP_NORESERVE = 0x4000  # Linux: no commit charge for the never-written mapping


def make_zero_stream(path: str, size: int) -> None:
    from migstream.encode.encoder import encode_stream
    from migstream.encode.memimage import MemoryImage
    from migstream.encode.sinks import FdSink

    ram = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
    for k in range(64):
        at = (k * 0x3F1D7) % (size // 4096) * 4096
        ram[at : at + 16] = b"data page %05d\n" % k
    image = MemoryImage.from_arrays("pc-i440fx-7.2", [("pc.ram", ram), ("pc.bios", bytes(256 << 10))])
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sink = FdSink(fd)
    try:
        encode_stream([image], sink)
    finally:
        sink.close()
        os.close(fd)
    os.replace(path + ".tmp", path)


def run(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one command."""
    t = time.perf_counter()
    pid = subprocess.Popen(argv, stdout=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if status:
        raise SystemExit(f"{' '.join(argv)} failed ({status})")
    return wall, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/migstream-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    mig = [sys.executable, "-m", "migstream"]
    res: dict = {"load_average_at_start": os.getloadavg()}
    out_dir = os.path.join(args.workdir, "dump-bench")
    os.makedirs(out_dir, exist_ok=True)

    zero = os.path.join(args.workdir, "zero-64g.mig")
    if not os.path.exists(zero):
        t = time.perf_counter()
        make_zero_stream(zero, 64 * GiB)
        print(f"made {zero} ({os.path.getsize(zero):,} bytes) in {time.perf_counter() - t:.1f} s")
    best = None
    for _ in range(args.repeat):
        for fmt in ("elf",):
            wall, rss = run([*mig, "dump", zero, "-o", os.path.join(out_dir, "zero.elf"), "--format", fmt])
            best = (wall, rss) if best is None or wall < best[0] else best
    assert best is not None
    res["zero64_dump_s"], res["zero64_dump_rss_kib"] = best
    print(f"64 GiB mostly-zero guest: dump {best[0]:.2f} s, peak RSS {best[1] / 1024:.0f} MiB")
    print(f"{'PASS' if best[0] < 2 else 'FAIL'}: 64 GiB mostly-zero dump under 2 s")

    mixed = os.path.join(args.workdir, "mixed-1g.mig")
    if not os.path.exists(mixed):
        print(f"{mixed} is missing: make it with benchmarks/capture_qemu.py (see benchmarks/README.md)")
    else:
        ext, dmp = [], []
        for _ in range(args.repeat):
            shutil.rmtree(os.path.join(out_dir, "extract"), ignore_errors=True)
            ext.append(run([*mig, "extract", mixed, "-o", os.path.join(out_dir, "extract")]))
            dmp.append(run([*mig, "dump", mixed, "-o", os.path.join(out_dir, "mixed.elf")]))
        e, d = min(ext), min(dmp)
        res.update(mixed_extract_s=e[0], mixed_dump_s=d[0], mixed_ratio=d[0] / e[0])
        res.update(mixed_extract_rss_kib=max(r for _, r in ext), mixed_dump_rss_kib=max(r for _, r in dmp))
        print(f"1 GiB mixed guest: extract {e[0]:.2f} s, dump {d[0]:.2f} s, ratio {d[0] / e[0]:.2f}")
        rss_e, rss_d = res["mixed_extract_rss_kib"] / 1024, res["mixed_dump_rss_kib"] / 1024
        print(f"  peak RSS: extract {rss_e:.0f} MiB, dump {rss_d:.0f} MiB")
        print(f"{'PASS' if d[0] / e[0] <= 1.3 else 'FAIL'}: dump within 1.3x of extract")
    shutil.rmtree(out_dir, ignore_errors=True)
    res["load_average_at_end"] = os.getloadavg()
    return finish_report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
