#!/usr/bin/env python3
"""migstream against the machine's floor, every job and its anchor alternated in one run.

    python3 benchmarks/bench_floor.py [--quick] [--rounds N] [--dir /var/tmp/migstream-bench]

Per round, each timed run after a ``sync`` (so no run pays for the previous one's
writeback; nothing else is dropped, the inputs stay in the page cache):

* ``encode``: ``migstream encode IMAGE --block pc.ram --machine pc-i440fx-7.2 -o OUT``
  (whole process) against QEMU 7.2 saving a paused VM whose pc.ram is the same image
  (memory-backend-file, ``-S``, max-bandwidth 1 TiB/s, ``migrate exec:cat > OUT``;
  QEMU's ``total-time``, boot excluded);
* ``extract``: ``migstream extract STREAM -o DIR`` (whole process) on QEMU's stream of that
  VM against ``write_floor.c`` writing the same non-zero pages from memory (runs
  coalesced, one pwrite each, sparse; no decoding; open to close);
* start-up: ``migstream --version`` (``--help`` where the checkout has no ``--version``)
  and ``migstream info`` on a small sample (x86-stopped, 8.4 MB, decompressed once into DIR so
  zstd is not timed), against the bare interpreter (``-c pass``).

The anchors (QEMU's save, the write floor) run once per round; ``--compare "CMD"`` measures a
second migstream command line (e.g. main's checkout) in the same rounds, the two in
alternating order, so a before/after comparison comes from one run.

The image (1 GiB: 50 % zero, 30 % random, 20 % text pages, make_image.py) and the stream
(capture_qemu.py) are made when missing.  Prints every run, the per-round ratios, the
median ratio, the largest private (anonymous) memory of the migstream processes and the
load average; ``--json`` writes it all.  ``--quick``: 2 rounds, 5 start-up repeats.
``--migstream "CMD"`` runs another checkout (e.g. ``"env PYTHONPATH=/work/main python3 -m
migstream"``); the outputs of the last round stay in DIR/work (``encode.mig``, ``extract/``;
``-compare`` suffixed for ``--compare``) for ``cmp``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from benchlib import write_json  # noqa: E402

from support.qemu import QEMU_X86  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)

DEFAULT_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")
SMALL_SAMPLE = os.path.join(ROOT, "samples", "x86-stopped.mig.zst")  # decompressed once into DIR


#: The environment of every timed process.  Python's bytecode cache is on, as an installed
#: package has it (pip compiles .pyc files at install; an editable install writes them on
#: its first run), unless --no-bytecode-cache: this sandbox sets PYTHONDONTWRITEBYTECODE,
#: under which every start-up compiles migstream's ~100 modules again (+60 ms for `info`).
CHILD_ENV = dict(os.environ)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def warm(path: str) -> None:
    """Read a file once, so every run finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


class PrivatePeak:
    """The largest RssAnon (private, anonymous memory) of a process, polled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except OSError:
                return
            self._stop.wait(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(argv: list[str], *, sync: bool = True, memory: bool = False) -> tuple[float, int]:
    """Wall seconds of one process (after a sync), and its private memory peak."""
    if sync:
        os.sync()
    t = time.perf_counter()
    # cwd "/": `python -m migstream` puts the working directory first on sys.path, ahead
    # of PYTHONPATH, so run from a checkout it would import that checkout whatever
    # --compare's PYTHONPATH says (stop 21's and 22's first comparisons measured main twice).
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CHILD_ENV, cwd="/")
    peak = PrivatePeak(proc.pid) if memory else None
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    private = peak.stop() if peak else 0
    if proc.returncode:
        sys.exit(f"{shlex.join(argv)}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
    return wall, private


def qemu_save(image: str, out: str) -> float:
    """QEMU 7.2's own save of a paused VM backed by ``image``: total-time, seconds."""
    size = os.path.getsize(image)
    args = ["-M", "pc-i440fx-7.2", "-m", f"{size >> 20}M", *image_ram_args(image, size), "-S"]
    tmp = tempfile.mkdtemp(prefix="bench-floor-")
    try:
        with Vm(QEMU_X86, args, tmp, "src") as vm:
            vm.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
            os.sync()
            vm.cmd("migrate", uri=f"exec:cat > {shlex.quote(out)}")
            info = vm.wait_migration(timeout=600, poll=0.005)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info["total-time"] / 1000


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def prepare(directory: str) -> tuple[str, str, str, str]:
    image = os.path.join(directory, "mixed-1g.img")
    stream = os.path.join(directory, "mixed-1g.mig")
    if not os.path.exists(image):
        print(f"making {image}", flush=True)
        subprocess.run(
            [sys.executable, os.path.join(HERE, "make_image.py"), "--kind", "mixed", "--size", "1G",
             "--manifest", image + ".json", image],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    if not os.path.exists(stream):
        print(f"capturing {stream} with QEMU 7.2", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "capture_qemu.py"), "stream", image, stream], check=True)
    sample = os.path.join(directory, os.path.basename(SMALL_SAMPLE).removesuffix(".zst"))
    if not os.path.exists(sample):
        import zstandard

        with open(SMALL_SAMPLE, "rb") as f, open(sample, "wb") as out:
            zstandard.ZstdDecompressor().copy_stream(f, out)
    floor = os.path.join(directory, "write_floor")
    subprocess.run(["gcc", "-O2", "-o", floor, os.path.join(HERE, "write_floor.c")], check=True)
    return image, stream, floor, sample


def write_floor(floor: str, image: str, out: str) -> float:
    remove(out)
    os.sync()
    res = subprocess.run([floor, image, out, "4096", "sparse"], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(res.stdout)["seconds"]


def startup_command(migstream: list[str]) -> list[str]:
    ok = subprocess.run([*migstream, "--version"], capture_output=True, env=CHILD_ENV).returncode == 0
    return ["--version"] if ok else ["--help"]


def measure(label: str, migstream: list[str], start_args: list[str], anchors: dict, paths: dict, args, starts: int):
    """One round of one migstream command line: encode, extract, start-up, info."""
    row: dict = {"label": label, **anchors}
    suffix = "" if label == "this" else "-" + label
    enc_out, ext_out = paths["encode.mig"] + suffix, paths["extract"] + suffix
    remove(enc_out)
    row["encode_s"], row["encode_private_b"] = timed(
        [*migstream, "encode", paths["image"], "--block", "pc.ram", "--machine", "pc-i440fx-7.2", "-o", enc_out],
        memory=True,
    )
    remove(ext_out)
    row["extract_s"], row["extract_private_b"] = timed(
        [*migstream, "extract", paths["stream"], "-o", ext_out], memory=True
    )
    py, ver, info, mem = [], [], [], 0
    for _ in range(starts):
        py.append(timed([sys.executable, "-c", "pass"], sync=False)[0])
        ver.append(timed([*migstream, *start_args], sync=False)[0])
        t, m = timed([*migstream, "info", args.sample], sync=False, memory=True)
        info.append(t)
        mem = max(mem, m)
    row.update(python_s=min(py), startup_s=min(ver), info_s=min(info), info_private_b=mem, load=load())
    row["encode_ratio"] = row["encode_s"] / row["qemu_save_s"]
    row["extract_ratio"] = row["extract_s"] / row["floor_s"]
    return row


def summarize(rows: list[dict]) -> dict:
    def med(key: str) -> float:
        return statistics.median(x[key] for x in rows)

    return {
        "encode_ratio_median": med("encode_ratio"),
        "encode_ratio_best": min(x["encode_ratio"] for x in rows),
        "extract_ratio_median": med("extract_ratio"),
        "extract_ratio_best": min(x["extract_ratio"] for x in rows),
        "info_s_best": min(x["info_s"] for x in rows),
        "startup_s_best": min(x["startup_s"] for x in rows),
        "python_s_best": min(x["python_s"] for x in rows),
        "private_mb": {k: max(x[f"{k}_private_b"] for x in rows) / 1e6 for k in ("encode", "extract", "info")},
    }


def report(label: str, cmd: list[str], summary: dict, start_args: list[str], sample: str) -> None:
    mb = summary["private_mb"]
    enc, ext = summary["encode_ratio_median"], summary["extract_ratio_median"]
    print(f"[{label}] {shlex.join(cmd)}")
    print(f"  encode  / QEMU save   median {enc:.2f}x  best {summary['encode_ratio_best']:.2f}x  (goal <= 0.5x)")
    print(f"  extract / write floor median {ext:.2f}x  best {summary['extract_ratio_best']:.2f}x  (goal <= 1.3x)")
    print(
        f"  info {os.path.basename(sample)} best {summary['info_s_best']:.3f} s (goal <= 0.12 s); "
        f"{start_args[0]} {summary['startup_s_best']:.3f} s; bare interpreter {summary['python_s_best']:.3f} s"
    )
    print(
        f"  private memory peak: encode {mb['encode']:.0f} MB, extract {mb['extract']:.0f} MB, "
        f"info {mb['info']:.0f} MB (goal <= 150 MB)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=DEFAULT_DIR, help="images, streams and outputs (default %(default)s)")
    ap.add_argument("--rounds", type=int, help="rounds of alternated runs (default 5, --quick 2)")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 5 start-up repeats")
    ap.add_argument("--migstream", default=f"{shlex.quote(sys.executable)} -m migstream", help="command to run")
    ap.add_argument("--compare", help="a second migstream command line measured in the same rounds (e.g. main)")
    ap.add_argument("--sample", help="the small sample for info (default: samples/x86-stopped.mig.zst, decompressed)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--no-bytecode-cache", action="store_true", help="start-ups compile every module (PYTHONDONTWRITEBYTECODE=1)"
    )
    args = ap.parse_args()
    if args.no_bytecode_cache:
        CHILD_ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    rounds = args.rounds or (2 if args.quick else 5)
    starts = 5 if args.quick else 10
    variants = [("this", shlex.split(args.migstream))]
    if args.compare:
        variants.append(("compare", shlex.split(args.compare)))

    args.dir = os.path.abspath(args.dir)  # the timed processes run in "/"
    os.makedirs(args.dir, exist_ok=True)
    image, stream, floor, sample = prepare(args.dir)
    args.sample = os.path.abspath(args.sample or sample)
    work = os.path.join(args.dir, "work")
    os.makedirs(work, exist_ok=True)
    paths = {k: os.path.join(work, k) for k in ("encode.mig", "qemu-save.mig", "extract", "floor.bin")}
    paths.update(image=image, stream=stream)
    warm(image)
    warm(stream)
    start_args = {label: startup_command(cmd) for label, cmd in variants}
    for _, cmd in variants:  # writes the bytecode cache of what `info` imports (unless --no-bytecode-cache)
        timed([*cmd, "info", args.sample], sync=False)
    cache = "off (every start-up compiles)" if args.no_bytecode_cache else "on"
    res: dict = {"load_average_at_start": load(), "rounds": [], "variants": dict(variants), "startup": start_args}
    res["bytecode_cache"] = not args.no_bytecode_cache
    print(f"load average at start: {res['load_average_at_start']}; {rounds} rounds; bytecode cache {cache}")
    print(f"{'round':<9}{'QEMU save':>10}{'encode':>9}{'ratio':>7}{'floor':>9}{'extract':>9}{'ratio':>7}"
          f"{'python':>8}{'start-up':>10}{'info':>7}  load")  # fmt: skip
    for r in range(rounds):
        remove(paths["qemu-save.mig"])
        anchors = {"qemu_save_s": qemu_save(image, paths["qemu-save.mig"])}
        anchors["floor_s"] = write_floor(floor, image, paths["floor.bin"])
        order = variants if r % 2 == 0 else variants[::-1]
        for label, cmd in order:
            row = measure(label, cmd, start_args[label], anchors, paths, args, starts)
            res["rounds"].append(row)
            print(f"{r + 1:<2}{label:<7}{row['qemu_save_s']:>9.3f}s{row['encode_s']:>8.3f}s{row['encode_ratio']:>6.2f}x"
                  f"{row['floor_s']:>8.3f}s{row['extract_s']:>8.3f}s{row['extract_ratio']:>6.2f}x"
                  f"{row['python_s']:>7.3f}s{row['startup_s']:>9.3f}s{row['info_s']:>6.3f}s  {row['load']}",
                  flush=True)  # fmt: skip
    res["load_average_at_end"] = load()
    res["summary"] = {}
    print()
    for label, cmd in variants:
        summary = summarize([x for x in res["rounds"] if x["label"] == label])
        res["summary"][label] = summary
        report(label, cmd, summary, start_args[label], args.sample)
    print(f"start-up: `migstream {' '.join(start_args['this'])}`; load average: start {res['load_average_at_start']}, "
          f"end {res['load_average_at_end']}")  # fmt: skip
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
