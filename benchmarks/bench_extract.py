#!/usr/bin/env python3
"""Time `migstream extract/info/validate` against QEMU's analyze-migration.py -x.

Every command runs under GNU time (`/usr/bin/time -v`, Debian package
`time`) for its peak RSS; wall time is measured around the child.  Each is run
--repeat times (default 3); the best (lowest) wall time is reported, and
the highest peak RSS seen.  The stream is read once before timing so that
both tools start with it in the page cache.

Measured:
  * mixed stream:  python3 analyze-migration.py -x -f STREAM   (in a temp dir)
                   migstream extract STREAM -o DIR
                   migstream info STREAM, migstream validate STREAM
  * zero-only and raw-only streams: migstream info / validate, reported as
    GiB/s of guest RAM (guest RAM size / wall time).

Goals checked (from the issue): extract <= 1/5 of analyze-migration.py -x
time, extract peak RSS < 150 MB (10^6 bytes), info/validate > 10 GiB/s on the
zero-only and raw-only streams.

If migstream is not installed (or a subcommand fails) its rows say so and
the rest is still measured.

    python3 benchmarks/bench_extract.py [--dir /var/tmp/migstream-bench] \\
        [--repeat 3] [--json results.json] [--migstream "python3 -m migstream"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")
GNU_TIME = "/usr/bin/time"
GIB = 1 << 30
RSS_LIMIT_BYTES = 150 * 10**6
EXTRACT_RATIO_GOAL = 0.2
GIBPS_GOAL = 10.0


# --------------------------------------------------------------------------
# helpers


def ensure_gnu_time() -> None:
    if os.path.exists(GNU_TIME):
        return
    if os.geteuid() != 0:
        sys.exit("GNU time missing: apt-get install -y time")
    print("installing GNU time (apt-get install -y time)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", "time"], check=False)
    if not os.path.exists(GNU_TIME):
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "time"], check=True)


def warm(path: str) -> None:
    """Read a file once so it sits in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def parse_time_v(text: str) -> dict:
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["max_rss_bytes"] = int(m.group(1)) * 1024
    m = re.search(r"User time \(seconds\): ([\d.]+)", text)
    if m:
        out["user_s"] = float(m.group(1))
    m = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if m:
        out["sys_s"] = float(m.group(1))
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["time_wall_s"] = secs
    m = re.search(r"Exit status: (\d+)", text)
    if m:
        out["exit_status"] = int(m.group(1))
    return out


# Children run with Python's bytecode cache on, as on a user's machine: this sandbox
# exports PYTHONDONTWRITEBYTECODE=1, which makes every run compile migstream's modules
# from source again (about 35 ms of each command's start-up).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_timed(argv: list[str], cwd: str, timeout: float) -> dict:
    """Run argv under /usr/bin/time -v; return wall, rss, rc, stderr tail."""
    with tempfile.NamedTemporaryFile("r", suffix=".time", delete=False) as tf:
        tpath = tf.name
    try:
        t0 = time.perf_counter()
        try:
            p = subprocess.run(
                [GNU_TIME, "-v", "-o", tpath, *argv],
                cwd=cwd,
                env=CHILD_ENV,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"rc": None, "error": f"timeout after {timeout} s"}
        wall = time.perf_counter() - t0
        with open(tpath) as f:
            tv = parse_time_v(f.read())
    finally:
        os.unlink(tpath)
    res = {"rc": p.returncode, "wall_s": wall, **tv}
    if p.returncode != 0:
        err = (p.stderr or b"").decode(errors="replace").strip().splitlines()
        res["error"] = " | ".join(err[-5:]) or f"exit status {p.returncode}"
    res["stdout_tail"] = (p.stdout or b"").decode(errors="replace")[-2000:]
    return res


def measure(
    name: str,
    argv: list[str],
    repeat: int,
    workroot: str,
    timeout: float,
    guest_ram: int | None,
    stream: str,
    sync: bool = True,
):
    """Run argv `repeat` times, each in a fresh temp dir under workroot.
    "{OUT}" in argv becomes DIR/out.  The first run's dir is kept (its path
    in runs[0]["_cwd"]) so the caller can verify the output; others are
    removed right after their run."""
    runs = []
    for i in range(repeat):
        cwd = tempfile.mkdtemp(prefix=name.replace(" ", "_") + "-", dir=workroot)
        if sync:
            # flush the previous run's dirty pages and the deletes of its
            # output first: on this machine's ext4 pending writeback from
            # the last run otherwise adds up to ~2 s of noise to the next one
            os.sync()
        r = run_timed([a.replace("{OUT}", os.path.join(cwd, "out")) for a in argv], cwd, timeout)
        runs.append(r)
        if i == 0 and r.get("rc") == 0:
            files = {}
            for root, _dirs, fns in os.walk(cwd):
                for fn in fns:
                    fp = os.path.join(root, fn)
                    files[os.path.relpath(fp, cwd)] = os.path.getsize(fp)
            r["_files"] = files
            r["_cwd"] = cwd
        else:
            shutil.rmtree(cwd, ignore_errors=True)
        if r.get("rc") != 0:
            break
    ok = [r for r in runs if r.get("rc") == 0]
    res = {
        "name": name,
        "argv": argv,
        "stream": stream,
        "stream_bytes": os.path.getsize(stream),
        "guest_ram_bytes": guest_ram,
        "repeat": repeat,
    }
    if len(ok) != len(runs) or not ok:
        bad = runs[-1] if runs else {"error": "not run"}
        res["status"] = "failed"
        res["error"] = bad.get("error", f"rc={bad.get('rc')}")
        res["rc"] = bad.get("rc")
        return res, runs
    walls = [r["wall_s"] for r in ok]
    res.update(
        {
            "status": "ok",
            "wall_s_best": min(walls),
            "wall_s_median": statistics.median(walls),
            "wall_s_runs": [round(w, 4) for w in walls],
            "user_s_best_run": ok[walls.index(min(walls))].get("user_s"),
            "sys_s_best_run": ok[walls.index(min(walls))].get("sys_s"),
            "max_rss_bytes": max(r.get("max_rss_bytes", 0) for r in ok),
            "stream_mib_per_s": os.path.getsize(stream) / 2**20 / min(walls),
        }
    )
    if guest_ram:
        res["guest_ram_gib_per_s"] = guest_ram / GIB / min(walls)
    res["output_files"] = ok[0].get("_files", {})
    return res, runs


def guest_ram_of(stream: str, default: int) -> int:
    try:
        with open(stream + ".json") as f:
            return int(json.load(f)["guest_ram_bytes"])
    except (OSError, KeyError, ValueError):
        return default


def image_of(stream: str) -> str | None:
    try:
        with open(stream + ".json") as f:
            img = json.load(f).get("image")
        return img if img and os.path.exists(img) else None
    except (OSError, ValueError):
        return None


def files_equal(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(16 << 20), fb.read(16 << 20)
            if x != y:
                return False
            if not x:
                return True


def verify_pc_ram(outdir: str, image: str | None) -> str:
    if not image:
        return "no image to compare"
    cands = []
    for root, _d, files in os.walk(outdir):
        for fn in files:
            if fn == "pc.ram" or fn.startswith("pc.ram."):
                cands.append(os.path.join(root, fn))
    if not cands:
        return "no pc.ram file in output"
    for c in cands:
        if files_equal(c, image):
            return f"pc.ram identical to image ({os.path.relpath(c, outdir)})"
    return "pc.ram DIFFERS from image"


def migstream_argv(spec: str) -> list[str] | None:
    argv = shlex.split(spec)
    if not argv:
        return None
    if os.sep not in argv[0] and shutil.which(argv[0]) is None:
        return None
    try:
        p = subprocess.run([*argv, "--help"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return argv if p.returncode == 0 else None


def fs_type(path: str) -> str:
    try:
        out = subprocess.run(
            ["findmnt", "-no", "FSTYPE", "--target", path], capture_output=True, text=True, timeout=10
        ).stdout.split()
        return out[0] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_info() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------


def fmt_s(x):
    return f"{x:8.3f}" if isinstance(x, (int, float)) else f"{'-':>8}"


def print_table(rows: list[dict]) -> None:
    hdr = f"{'command':<34} {'stream':<14} {'best s':>8} {'median s':>8} {'peak RSS':>10} {'GiB/s RAM':>9}  status"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        stream = os.path.basename(r.get("stream", "-"))
        if r["status"] == "ok":
            rss = f"{r['max_rss_bytes'] / 1e6:7.1f} MB"
            gibps = f"{r['guest_ram_gib_per_s']:9.2f}" if r.get("guest_ram_gib_per_s") else f"{'-':>9}"
            times = f"{fmt_s(r['wall_s_best'])} {fmt_s(r['wall_s_median'])}"
            print(f"{r['name']:<34} {stream:<14} {times} {rss:>10} {gibps}  ok")
        else:
            msg = r["status"] + (f": {r['error']}" if r.get("error") else "")
            print(f"{r['name']:<34} {stream:<14} {fmt_s(None)} {fmt_s(None)} {'-':>10} {'-':>9}  {msg[:120]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=DEFAULT_DIR, help=f"benchmark data directory (default {DEFAULT_DIR})")
    ap.add_argument("--mixed", help="mixed stream (default DIR/mixed-1g.mig)")
    ap.add_argument("--zero", help="zero-only stream (default DIR/zero-1g.mig)")
    ap.add_argument("--raw", help="raw-only stream (default DIR/raw-1g.mig)")
    ap.add_argument("--analyze", help="analyze-migration.py (default DIR/qemu-scripts/analyze-migration.py)")
    ap.add_argument(
        "--python",
        default=shutil.which("python3") or sys.executable,
        help="interpreter for analyze-migration.py (default: python3 on PATH)",
    )
    ap.add_argument(
        "--migstream",
        default=os.environ.get("MIGSTREAM", "migstream"),
        help='migstream command, e.g. "migstream" (default) or "python3 -m migstream"',
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per command, best-of (default 3)")
    ap.add_argument(
        "--guest-ram", type=int, default=GIB, help="guest RAM bytes when STREAM.json is absent (default 1 GiB)"
    )
    ap.add_argument(
        "--workdir",
        help="where the output dirs of the runs go (default DIR/work); "
        "its filesystem matters: e.g. /dev/shm/migstream-bench for tmpfs",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    ap.add_argument("--skip-analyze", action="store_true", help="do not run analyze-migration.py")
    ap.add_argument("--skip-migstream", action="store_true", help="do not run migstream")
    ap.add_argument("--no-verify", action="store_true", help="do not compare extracted pc.ram with the source image")
    ap.add_argument("--no-sync", action="store_true", help="do not run sync(2) before each timed run")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args(argv)

    d = args.dir
    mixed = args.mixed or os.path.join(d, "mixed-1g.mig")
    zero = args.zero or os.path.join(d, "zero-1g.mig")
    raw = args.raw or os.path.join(d, "raw-1g.mig")
    analyze = args.analyze or os.path.join(d, "qemu-scripts", "analyze-migration.py")
    workroot = args.workdir or os.path.join(d, "work")
    os.makedirs(workroot, exist_ok=True)
    ensure_gnu_time()

    results: dict = {
        "machine": machine_info(),
        "repeat": args.repeat,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workdir": os.path.abspath(workroot),
        "workdir_fs": fs_type(workroot),
        "rows": [],
        "notes": [],
    }
    for s in (mixed, zero, raw):
        if os.path.exists(s + ".json"):
            with open(s + ".json") as f:
                results.setdefault("streams", {})[os.path.basename(s)] = json.load(f)
    rows = results["rows"]

    def add(name, argv_, stream, verify=False):
        if not os.path.exists(stream):
            rows.append(
                {
                    "name": name,
                    "stream": stream,
                    "status": "missing stream",
                    "error": f"{stream} not found (run capture_qemu.py all)",
                }
            )
            return
        warm(stream)
        print(f"running {name} on {os.path.basename(stream)} x{args.repeat} ...", file=sys.stderr, flush=True)
        res, runs = measure(
            name,
            argv_,
            args.repeat,
            workroot,
            args.timeout,
            guest_ram_of(stream, args.guest_ram),
            stream,
            not args.no_sync,
        )
        first = runs[0] if runs else {}
        if verify and res["status"] == "ok" and "_cwd" in first:
            res["verify"] = "skipped" if args.no_verify else verify_pc_ram(first["_cwd"], image_of(stream))
        if "_cwd" in first:
            shutil.rmtree(first["_cwd"], ignore_errors=True)
        rows.append(res)

    # (a) QEMU's analyze-migration.py -x
    if not args.skip_analyze:
        if os.path.exists(analyze):
            results["analyze_migration"] = analyze
            add("analyze-migration.py -x", [args.python, analyze, "-x", "-f", mixed], mixed, verify=True)
        else:
            rows.append(
                {
                    "name": "analyze-migration.py -x",
                    "stream": mixed,
                    "status": "not available",
                    "error": f"{analyze} missing (run get_analyze_migration.sh)",
                }
            )

    # (b) migstream
    if not args.skip_migstream:
        ms = migstream_argv(args.migstream)
        results["migstream"] = args.migstream if ms else None
        jobs = [
            ("migstream extract", ["extract", "{STREAM}", "-o", "{OUT}"], mixed, True),
            ("migstream info", ["info", "{STREAM}"], mixed, False),
            ("migstream validate", ["validate", "{STREAM}"], mixed, False),
            ("migstream info", ["info", "{STREAM}"], zero, False),
            ("migstream validate", ["validate", "{STREAM}"], zero, False),
            ("migstream info", ["info", "{STREAM}"], raw, False),
            ("migstream validate", ["validate", "{STREAM}"], raw, False),
        ]
        for name, sub, stream, verify in jobs:
            if ms is None:
                rows.append(
                    {
                        "name": name,
                        "stream": stream,
                        "status": "not available",
                        "error": f"{args.migstream!r} not installed or not runnable",
                    }
                )
                continue
            add(name, [*ms, *[a.replace("{STREAM}", stream) for a in sub]], stream, verify)

    # ratios and goals
    def row(name, stream):
        for r in rows:
            if r["name"] == name and r.get("stream") == stream and r.get("status") == "ok":
                return r
        return None

    goals = {}
    a, e = row("analyze-migration.py -x", mixed), row("migstream extract", mixed)
    if a and e:
        ratio = e["wall_s_best"] / a["wall_s_best"]
        goals["extract_time_ratio"] = {
            "value": ratio,
            "goal": f"<= {EXTRACT_RATIO_GOAL}",
            "pass": ratio <= EXTRACT_RATIO_GOAL,
            "speedup": a["wall_s_best"] / e["wall_s_best"],
        }
    else:
        goals["extract_time_ratio"] = {"value": None, "goal": f"<= {EXTRACT_RATIO_GOAL}", "pass": None}
    if e:
        goals["extract_peak_rss"] = {
            "value_mb": e["max_rss_bytes"] / 1e6,
            "goal": "< 150 MB",
            "pass": e["max_rss_bytes"] < RSS_LIMIT_BYTES,
        }
    else:
        goals["extract_peak_rss"] = {"value_mb": None, "goal": "< 150 MB", "pass": None}
    for cmd in ("info", "validate"):
        for label, s in (("zero", zero), ("raw", raw)):
            r = row(f"migstream {cmd}", s)
            v = r.get("guest_ram_gib_per_s") if r else None
            goals[f"{cmd}_{label}_gib_per_s"] = {
                "value": v,
                "goal": f"> {GIBPS_GOAL}",
                "pass": None if v is None else v > GIBPS_GOAL,
            }
    results["goals"] = goals

    # report
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}")
    for name, meta in results.get("streams", {}).items():
        print(
            f"stream {name}: {meta['stream_bytes'] / 2**20:.1f} MiB, guest RAM {meta['guest_ram_bytes'] >> 20} MiB, "
            f"QEMU save total-time {meta.get('total_time_ms_best', meta.get('total_time_ms'))} ms"
        )
    print(f"outputs written under {results['workdir']} ({results['workdir_fs']})")
    print(f"best of {args.repeat}; peak RSS = max over runs (MB = 10^6 bytes)\n")
    print_table(rows)
    for r in rows:
        if r.get("verify"):
            print(f"  {r['name']}: {r['verify']}")
    print("\ngoals:")
    for k, g in goals.items():
        val = g.get("value", g.get("value_mb"))
        vs = "n/a" if val is None else f"{val:.3f}"
        extra = f" (speedup x{g['speedup']:.1f})" if g.get("speedup") else ""
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[g["pass"]]
        print(f"  {k:<28} {vs:>10}  goal {g['goal']:<8} {verdict}{extra}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
