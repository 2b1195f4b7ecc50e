#!/usr/bin/env python3
"""What the tap costs a real migration: QEMU's total-time with and without it.

A paused 1 GiB VM whose RAM is an image (memory-backend-file, share=off, -S; no
guest code) migrates over a unix socket to a paused destination QEMU
(-incoming defer), once directly and once through `migstream tap` (the command,
in its own process, recording every channel to --rec-dir).  Runs alternate
(direct, tap, direct, tap, ...) so that the machine's state affects both alike;
the figure is QEMU's own `total-time` from query-migrate on the source.  The
ratio of the medians (and of the bests) is the overhead; the goal is < 1.1x.

    python3 benchmarks/bench_tap.py [--image IMG] [--repeat 5] [--multifd N]
                                    [--rec-dir DIR] [--json OUT]

The image defaults to $MIGSTREAM_BENCH_DIR/mixed-1g.img (made with
make_image.py --kind mixed when missing).  Needs qemu-system-x86_64 (7.2) and
the qemu.qmp package.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)

BENCH_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")
QEMU = "qemu-system-x86_64"
MAX_BANDWIDTH = 1 << 40  # "unlimited" (7.2 default is 128 MiB/s)


def one_run(image: str, size_mib: int, via_tap: bool, multifd: int, rec_dir: str, migstream: list[str]) -> dict:
    work = tempfile.mkdtemp(prefix="mgs-bench-")
    machine = ["-M", "pc", "-m", f"{size_mib}M"]
    src_args = [*machine, *image_ram_args(image, size_mib << 20), "-S"]
    dst_sock = os.path.join(work, "dst.sock")
    tap_sock = os.path.join(work, "tap.sock")
    src = dst = tap = None
    try:
        src = Vm(QEMU, src_args, work, "src", timeout=30)
        dst = Vm(QEMU, machine + ["-S", "-incoming", "defer"], work, "dst", timeout=30)
        for vm in (src, dst):
            if multifd:
                vm.caps("multifd")
                vm.cmd("migrate-set-parameters", **{"multifd-channels": multifd})
        src.cmd("migrate-set-parameters", **{"max-bandwidth": MAX_BANDWIDTH})
        dst.cmd("migrate-incoming", uri=f"unix:{dst_sock}")
        target = dst_sock
        if via_tap:
            shutil.rmtree(rec_dir, ignore_errors=True)
            tap = subprocess.Popen(
                migstream
                + [
                    "tap",
                    "--listen",
                    f"unix:{tap_sock}",
                    "--forward",
                    f"unix:{dst_sock}",
                    "-o",
                    rec_dir,
                    "--json",
                    "--no-progress",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 20
            while not os.path.exists(tap_sock):
                if tap.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"tap did not start: {tap.stderr.read()}")
                time.sleep(0.02)
            target = tap_sock
        t0 = time.perf_counter()
        src.cmd("migrate", uri=f"unix:{target}")
        st = src.wait_migration(timeout=600, poll=0.02)
        wall_ms = round((time.perf_counter() - t0) * 1000)
        res = {
            "via_tap": via_tap,
            "total_time_ms": st["total-time"],
            "wall_ms": wall_ms,
            "downtime_ms": st.get("downtime"),
            "transferred": st["ram"]["transferred"],
            "mbps": st["ram"].get("mbps"),
        }
        if tap is not None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out, err = tap.communicate(timeout=60)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # The tap is the only child reaped in between: its own CPU time.
            res["tap_cpu_s"] = {
                "user": round(after.ru_utime - before.ru_utime, 3),
                "sys": round(after.ru_stime - before.ru_stime, 3),
            }
            if tap.returncode != 0:
                raise SystemExit(f"tap failed ({tap.returncode}): {err}\n{out}")
            doc = json.loads(out)
            res["recorded"] = {c["file"]: c["bytes"] for c in doc["channels"]}
            res["recording_complete"] = doc["complete"]
        return res
    finally:
        if tap is not None and tap.poll() is None:
            tap.kill()
            tap.wait()
        for vm in (src, dst):
            if vm is not None:
                vm.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=os.path.join(BENCH_DIR, "mixed-1g.img"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--multifd", type=int, default=0, help="multifd channels (0 = off)")
    ap.add_argument("--rec-dir", default=os.path.join(BENCH_DIR, "tap-rec"))
    ap.add_argument(
        "--migstream", default=f"{sys.executable} -m migstream.cli", help="how to run migstream (default: this Python)"
    )
    ap.add_argument("--json", help="write all runs and the summary here")
    args = ap.parse_args(argv)
    if not os.path.exists(args.image):
        os.makedirs(os.path.dirname(args.image), exist_ok=True)
        subprocess.run(
            [sys.executable, os.path.join(HERE, "make_image.py"), "--kind", "mixed", "--size", "1G", args.image],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    size_mib = os.path.getsize(args.image) >> 20
    migstream = args.migstream.split()
    if migstream[1:3] == ["-m", "migstream.cli"]:
        # `python -m migstream.cli` would register plugin commands on another module object.
        migstream = [migstream[0], "-c", "from migstream.cli import main; main()"]
    # Warm the page cache with the image so the first run is not the odd one out.
    with open(args.image, "rb") as f:
        while f.read(64 << 20):
            pass
    runs = []
    for i in range(args.repeat):
        for via_tap in (False, True):
            r = one_run(args.image, size_mib, via_tap, args.multifd, args.rec_dir, migstream)
            runs.append(r)
            print(
                f"run {i + 1} {'tap   ' if via_tap else 'direct'}: total-time {r['total_time_ms']} ms"
                + (
                    f", recorded {sum(r['recorded'].values()) / 2**20:.0f} MiB in {len(r['recorded'])} "
                    f"channel(s), complete={r['recording_complete']}, tap CPU {r['tap_cpu_s']['user']} s user "
                    f"+ {r['tap_cpu_s']['sys']} s sys"
                    if via_tap
                    else ""
                ),
                flush=True,
            )
    # QEMU 7.2 now and then reports total-time 0 for a completed migration: such a run
    # (and its pair) is left out, and the polling wall time is kept beside it.
    pairs = [
        (runs[i], runs[i + 1])
        for i in range(0, len(runs), 2)
        if runs[i]["total_time_ms"] > 0 and runs[i + 1]["total_time_ms"] > 0
    ]
    if not pairs:
        raise SystemExit("no valid run pairs")
    direct = [d["total_time_ms"] for d, _ in pairs]
    tapped = [t["total_time_ms"] for _, t in pairs]
    pair_ratios = [t / d for d, t in zip(direct, tapped)]
    cpu = [t["tap_cpu_s"]["user"] + t["tap_cpu_s"]["sys"] for _, t in pairs]
    summary = {
        "image": args.image,
        "guest_ram_mib": size_mib,
        "multifd": args.multifd,
        "repeat": args.repeat,
        "valid_pairs": len(pairs),
        "direct_ms": direct,
        "tap_ms": tapped,
        "median_ratio": round(statistics.median(tapped) / statistics.median(direct), 3),
        "best_ratio": round(min(tapped) / min(direct), 3),
        "median_pair_ratio": round(statistics.median(pair_ratios), 3),
        "tap_cpu_s_median": round(statistics.median(cpu), 3),
        "load_average": os.getloadavg(),
    }
    print(f"direct: median {statistics.median(direct):.0f} ms, best {min(direct)} ms")
    print(f"tap:    median {statistics.median(tapped):.0f} ms, best {min(tapped)} ms")
    print(
        f"tap process CPU (user+sys, incl. ~0.4 s start-up): median {summary['tap_cpu_s_median']} s; "
        f"load average {summary['load_average'][0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"ratio:  median {summary['median_ratio']}x, best {summary['best_ratio']}x, "
        f"median of pairs {summary['median_pair_ratio']}x (goal < 1.1x): "
        f"{'PASS' if summary['median_ratio'] < 1.1 else 'FAIL'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "runs": runs}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
