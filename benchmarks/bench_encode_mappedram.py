#!/usr/bin/env python3
"""Mapped-ram encoding speed against plain encoding, on the 1 GiB mixed image.

The image is make_image.py's ``mixed`` kind (50 % zero pages, 30 % random, 20 %
text, interleaved), so about half the pages are written, in short runs (the worst
case for "one pwrite per run").  Best of N, each run writing a new file in the
same directory as the image (the page cache, like bench_encode.py):

* ``plain``: ``encode_stream`` in-process (ZERO/PAGE records, pwritev of batches);
* ``mapped-ram``: ``encode_mapped_ram`` in-process;
* ``mapped-ram cli``: the whole ``migstream encode --mapped-ram`` process;
* optionally (``--qemu10 ROOT``) QEMU 10.0 saving the same RAM with mapped-ram to a
  ``file:`` URI, its ``total-time`` (a paused VM whose pc.ram is a private mapping
  of the image, as capture_qemu.py does for QEMU 7.2).

Also reported: file size, allocated bytes (st_blocks) and "guest GiB/s" (RAM
described per second).  With ``--sync``, ``sync`` runs before every timed run so
that writeback of the previous file does not land in the next one.

    python3 benchmarks/bench_encode_mappedram.py [--dir /var/tmp/migstream-bench] [--repeat 3]
                                                 [--qemu10 /var/tmp/qemu10] [--sync] [--json F]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from benchlib import finish_report  # noqa: E402

from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import qemu10_wrapper  # noqa: E402  (tests/ is put on sys.path just above)

DEFAULT_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")
MACHINE = "pc-i440fx-10.0"


#: ``sync`` before each timed run (--sync); off by default: on a machine shared with
#: other writers it waits for their writeback too (minutes).
SYNC = False


def _fresh(path: str) -> int:
    if os.path.exists(path):
        os.unlink(path)
    if SYNC:
        subprocess.run(["sync"], check=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)


def _file(path: str) -> dict:
    st = os.stat(path)
    return {"file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512}


def library(image: str, out: str, repeat: int, mapped: bool) -> dict:
    from migstream import FdSink
    from migstream import MemoryImage
    from migstream import encode_stream
    from migstream.encode.mappedram_writer import encode_mapped_ram

    runs = []
    stats = None
    with MemoryImage.from_raw(image, "pc.ram", MACHINE) as img:
        for _ in range(repeat):
            fd = _fresh(out)
            t0 = time.perf_counter()
            if mapped:
                stats = encode_mapped_ram([img], fd)
            else:
                sink = FdSink(fd)
                stats = encode_stream([img], sink)
                sink.close()
            runs.append(time.perf_counter() - t0)
            os.close(fd)
    ram = stats.as_dict()["ram"]
    return {"best_s": min(runs), "runs_s": runs, **_file(out), "normal": ram["normal"], "duplicate": ram["duplicate"]}


def cli(image: str, out: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        os.close(_fresh(out))
        os.unlink(out)
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "migstream.cli",
                "encode",
                image,
                "--block",
                "pc.ram",
                "--machine",
                MACHINE,
                "--mapped-ram",
                "-o",
                out,
                "--no-progress",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        runs.append(time.perf_counter() - t0)
    return {"best_s": min(runs), "runs_s": runs, **_file(out)}


def qemu10_save(root: str, image: str, out: str, repeat: int) -> dict:
    """QEMU 10 migrating a paused VM (pc.ram = the image) to file: with mapped-ram."""
    import shutil
    import tempfile

    size = os.path.getsize(image)
    args = ["-S", "-M", MACHINE, "-m", f"{size >> 20}M", *image_ram_args(image, size)]
    runs = []
    work = tempfile.mkdtemp(prefix="bench-mappedram-")
    try:
        binary = qemu10_wrapper(root, work)
        for k in range(repeat):
            with Vm(binary, args, work, f"q10-{k}") as vm:
                vm.caps("mapped-ram")
                vm.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
                os.close(_fresh(out))
                os.unlink(out)
                vm.cmd("migrate", uri=f"file:{out}")
                runs.append(vm.wait_migration(120, poll=0.02)["total-time"] / 1000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"best_s": min(runs), "runs_s": runs, **_file(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--qemu10", help="root unpacked by samples/get_qemu10.sh: also time QEMU 10 itself")
    ap.add_argument("--json")
    ap.add_argument("--sync", action="store_true", help="sync before every timed run")
    a = ap.parse_args()
    global SYNC
    SYNC = a.sync
    image = os.path.join(a.dir, "mixed-1g.img")
    if not os.path.exists(image):
        subprocess.run(
            [sys.executable, os.path.join(HERE, "make_image.py"), "--kind", "mixed", "--size", "1G", image], check=True
        )
    subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)  # into the page cache
    out = os.path.join(a.dir, "bench-mappedram.mig")
    res: dict = {"image": image, "image_bytes": os.path.getsize(image), "load_average_at_start": os.getloadavg()}
    res["plain"] = library(image, out, a.repeat, mapped=False)
    res["mapped_ram"] = library(image, out, a.repeat, mapped=True)
    res["mapped_ram_cli"] = cli(image, out, a.repeat)
    if a.qemu10:
        res["qemu10_mapped_ram"] = qemu10_save(a.qemu10, image, out + ".qemu", a.repeat)
        os.unlink(out + ".qemu")
    res["load_average_at_end"] = os.getloadavg()
    os.unlink(out)

    gib = res["image_bytes"] / (1 << 30)
    print(f"{'what':<42} {'best s':>7} {'GiB/s':>6} {'file MB':>8} {'alloc MB':>9}   runs")
    for label, key in [
        ("plain encode_stream (in-process)", "plain"),
        ("mapped-ram encode_mapped_ram (in-process)", "mapped_ram"),
        ("migstream encode --mapped-ram (CLI)", "mapped_ram_cli"),
        ("QEMU 10 migrate file: mapped-ram", "qemu10_mapped_ram"),
    ]:
        if key in res:
            r = res[key]
            print(
                f"{label:<42} {r['best_s']:7.3f} {gib / r['best_s']:6.2f} {r['file_bytes'] / 1e6:8.1f} "
                f"{r['allocated_bytes'] / 1e6:9.1f}   {', '.join(f'{x:.3f}' for x in r['runs_s'])}"
            )
    return finish_report(res, a.json)


if __name__ == "__main__":
    sys.exit(main())
