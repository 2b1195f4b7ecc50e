#!/usr/bin/env python3
"""Encoding speed: `migstream encode` against QEMU 7.2 saving the same RAM.

The input is the 1 GiB mixed image of make_image.py (50 % zero pages, 30 %
random, 20 % text).  QEMU's side is capture_qemu.py's recipe: a paused VM whose
pc.ram is a private mapping of the image migrates to ``exec:cat > FILE``; its
``total-time`` (migrate command to completion, QEMU's own clock) is the figure,
best of N, once with max-bandwidth raised to 1 TiB/s (unthrottled) and once with
7.2's default max-bandwidth (128 MiB/s, one run).  The unthrottled QEMU runs and
migstream's runs alternate, so both see the same machine load.  CPU seconds are reported beside wall
seconds (QEMU's from /proc between `migrate` and completion, ours from
getrusage): on a shared, loaded machine wall time mostly measures the load.  migstream's side, best of N, writing a
new file in the same directory:

* ``library``: ``encode_stream`` in-process (the engine alone, like total-time),
  mapping the image included;
* ``cli``: the whole ``migstream encode IMG ...`` process, Python start included;
* ``compress``: ``--compress-threads 2`` on the first 256 MiB, with the CPU time
  of the process divided by wall time ("cores busy", 2.0 = both cores).

Both streams are then compared record by record (kind, block, offset, payload) on
a sample of the image to show the comparison is like for like; the full equality
check is tests/qemu/test_qemu_encode.py::test_record_sequence_equals_qemu_bulk_stage.

    python3 benchmarks/bench_encode.py [--dir /var/tmp/migstream-bench] [--repeat 3] [--json F]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from benchlib import finish_report  # noqa: E402

from support.qemu import QEMU_X86  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)

DEFAULT_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")
QEMU_DEFAULT_MAX_BANDWIDTH = 128 << 20  # MigrationParameters default in 7.2


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process and its reaped children, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def qemu_migrate(image: str, out: str, bandwidth: int, repeat: int) -> dict:
    """capture_qemu.py's recipe, also reading the QEMU process's CPU time spent
    between `migrate` and completion (the `cat` child is not included)."""
    import shutil
    import tempfile

    runs, cpus = [], []
    info = {}
    size = os.path.getsize(image)
    args = ["-M", "pc", "-m", f"{size >> 20}M", *image_ram_args(image, size), "-S"]
    for _ in range(repeat):
        tmp = tempfile.mkdtemp(prefix="bench-encode-")
        if os.path.exists(out):
            os.unlink(out)
        try:
            with Vm(QEMU_X86, args, tmp, "src") as vm:
                vm.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})
                cpu0 = _proc_cpu(vm.proc.pid)
                vm.cmd("migrate", uri=f"exec:cat > {out}")
                info = vm.wait_migration(timeout=600, poll=0.01)
                cpus.append(_proc_cpu(vm.proc.pid) - cpu0)
            runs.append(info["total-time"] / 1000)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "best_s": min(runs),
        "runs_s": runs,
        "cpu_s": min(cpus),
        "stream_bytes": os.path.getsize(out),
        "ram": info.get("ram", {}),
    }


def library_time(image: str, out: str, repeat: int) -> dict:
    from migstream import FdSink
    from migstream import MemoryImage
    from migstream import encode_stream

    runs, cpus = [], []
    stats = None
    for _ in range(repeat):
        if os.path.exists(out):
            os.unlink(out)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with MemoryImage.from_raw(image, "pc.ram", "pc-i440fx-7.2") as img:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sink = FdSink(fd)
            stats = encode_stream([img], sink)
            sink.close()
            os.close(fd)
        runs.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {
        "best_s": min(runs),
        "runs_s": runs,
        "cpu_s": min(cpus),
        "stream_bytes": os.path.getsize(out),
        "ram": stats.as_dict()["ram"],
    }


def cli_time(args: list[str], out: str, repeat: int) -> dict:
    runs, busy, cpus = [], [], []
    for _ in range(repeat):
        if os.path.exists(out):
            os.unlink(out)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "migstream.cli", "encode", *args, "-o", out, "--no-progress"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        runs.append(wall)
        busy.append(cpu / wall)
        cpus.append(cpu)
    return {
        "best_s": min(runs),
        "runs_s": runs,
        "cpu_s": min(cpus),
        "cores_busy": max(busy),
        "stream_bytes": os.path.getsize(out),
    }


def same_records(a: str, b: str, limit: int = 20000) -> bool:
    """The first ``limit`` RAM page records of two streams are equal."""
    from migstream import PageRecord
    from migstream import PageRun
    from migstream import StreamDecoder

    def first(path):
        dec = StreamDecoder()
        out = []
        with open(path, "rb") as f:
            while len(out) < limit:
                chunk = f.read(16 << 20)
                dec.feed(chunk)
                if not chunk:
                    break
                for ev in dec:
                    if isinstance(ev, PageRun):
                        out += [(r.flags, r.block, r.addr, bytes(r.data), r.fill) for r in ev.records()]
                    elif isinstance(ev, PageRecord):
                        out.append((ev.flags, ev.block, ev.addr, bytes(ev.data), ev.fill))
        return [r for r in out if r[1] == "pc.ram"][:limit]

    return first(a) == first(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--skip-qemu", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    image = os.path.join(a.dir, "mixed-1g.img")
    if not os.path.exists(image):
        subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "make_image.py"),
                "--kind",
                "mixed",
                "--size",
                "1G",
                "--manifest",
                image + ".json",
                image,
            ],
            check=True,
        )
    small = os.path.join(a.dir, "mixed-256m.img")
    if not os.path.exists(small) or os.path.getsize(small) != 256 << 20:
        with open(image, "rb") as src, open(small, "wb") as dst:
            dst.write(src.read(256 << 20))
    subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)  # page cache, like QEMU's runs

    res: dict = {"load_average_at_start": os.getloadavg()}
    qemu_out = os.path.join(a.dir, "bench-qemu.mig")
    ours_out = os.path.join(a.dir, "bench-encode.mig")
    if not a.skip_qemu:
        res["qemu_default_bandwidth"] = qemu_migrate(image, qemu_out, QEMU_DEFAULT_MAX_BANDWIDTH, 1)
    # Interleaved, so that QEMU and migstream see the same machine load.
    runs: dict = {}
    for _ in range(a.repeat):
        if not a.skip_qemu:
            runs.setdefault("qemu_unthrottled", []).append(qemu_migrate(image, qemu_out, 1 << 40, 1))
        runs.setdefault("library", []).append(library_time(image, ours_out, 1))
        runs.setdefault("cli", []).append(
            cli_time([image, "--block", "pc.ram", "--machine", "pc-i440fx-7.2"], ours_out, 1)
        )
    for key, rs in runs.items():
        best = min(rs, key=lambda r: r["best_s"])
        res[key] = {**best, "runs_s": [r["best_s"] for r in rs], "cpu_s": min(r["cpu_s"] for r in rs)}
    if not a.skip_qemu:
        res["records_equal_first_20000"] = same_records(qemu_out, ours_out)
    res["compress_256m"] = cli_time(
        [small, "--block", "pc.ram", "--machine", "pc-i440fx-7.2", "--compress-threads", "2"],
        ours_out + ".z",
        max(1, a.repeat - 1),
    )
    res["load_average_at_end"] = os.getloadavg()
    for p in (qemu_out, ours_out, ours_out + ".z"):
        if os.path.exists(p):
            os.unlink(p)

    print(f"{'what':<44} {'best s':>8} {'cpu s':>7}   runs (wall s)")
    rows = [
        ("QEMU 7.2 migrate, max-bandwidth 1 TiB/s", "qemu_unthrottled"),
        ("QEMU 7.2 migrate, default max-bandwidth", "qemu_default_bandwidth"),
        ("migstream encode_stream (in-process)", "library"),
        ("migstream encode (CLI, whole process)", "cli"),
        ("migstream encode --compress-threads 2, 256M", "compress_256m"),
    ]
    for label, key in rows:
        if key in res:
            r = res[key]
            print(f"{label:<44} {r['best_s']:8.3f} {r['cpu_s']:7.3f}   {', '.join(f'{x:.3f}' for x in r['runs_s'])}")
    print(f"compression: cores busy {res['compress_256m']['cores_busy']:.2f} of {os.cpu_count()}")
    if "qemu_unthrottled" in res:
        print(f"records equal (first 20000 pc.ram records): {res['records_equal_first_20000']}")
        for key in ("qemu_unthrottled", "qemu_default_bandwidth"):
            q = res[key]["best_s"]
            for mine in ("library", "cli"):
                m = res[mine]["best_s"]
                verdict = "PASS" if m <= q / 2 else "FAIL"
                print(f"goal {mine} <= half of {key} ({q / 2:.3f} s): {m:.3f} s {verdict}")
    return finish_report(res, a.json)


if __name__ == "__main__":
    sys.exit(main())
