#!/usr/bin/env python3
"""Reading a qcow2 snapshot's VM state against reading the same stream as a plain file.

A paused QEMU 7.2 VM whose RAM is the mixed image (make_image.py, default 1 GiB) with a
qcow2 boot disk does HMP `savevm s1`; the same state is copied out to a plain file
(through migstream's reader, checked against `qemu-img info`'s vm-state-size). Then
`migstream info` and `migstream extract` run on both, alternated, best of N wall
seconds and peak RSS (/usr/bin/time -v); the ratio says what the cluster reader costs.

    python benchmarks/bench_qcow2.py [--size 1G] [--cluster 64k] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from support.qemu import QEMU_X86  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import build_guest  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)

SIZES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one migstream command."""
    t = time.perf_counter()
    r = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-m", "migstream", *args], capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"migstream {' '.join(args)}: {r.stderr[-500:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return wall, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench"))
    ap.add_argument("--size", default="1G")
    ap.add_argument("--cluster", default="64k")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    size = int(a.size[:-1]) * SIZES[a.size[-1].upper()]
    work = Path(a.dir) / "qcow2"
    work.mkdir(parents=True, exist_ok=True)
    ram = Path(a.dir) / f"mixed-{a.size.lower()}.img"
    if not ram.exists():
        subprocess.run([sys.executable, str(HERE / "make_image.py"), "--size", a.size, str(ram)], check=True)
    guest = build_guest(work)
    image = work / "bench.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={a.cluster}", str(guest), str(image)],
        check=True,
    )
    args = ["-M", "pc", "-m", str(size >> 20) + "M", "-S", "-drive", f"file={image},format=qcow2,if=ide"]
    t = time.perf_counter()
    with Vm(QEMU_X86, args + image_ram_args(ram, size), work, "bench") as vm:
        out = vm.hmp("savevm s1")
        assert not out.strip(), out
    savevm = time.perf_counter() - t
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True).stdout)
    state_size = info["snapshots"][0]["vm-state-size"]

    from migstream.containers.qcow2 import Qcow2Image
    from migstream.containers.qcow2 import VmStateReader

    plain = work / "state.mig"
    with open(image, "rb") as f, open(plain, "wb") as out_f:
        img = Qcow2Image(f.fileno(), str(image))
        for chunk in VmStateReader(img, img.select("s1")).chunks():
            out_f.write(chunk)
    assert plain.stat().st_size == state_size

    rows = {}
    for what in ("info", "extract"):
        for name in ("plain", "qcow2"):
            rows[(what, name)] = []
        for _ in range(a.repeat):
            for name, path in (("plain", str(plain)), ("qcow2", f"{image}@s1")):
                cmd = [what, path] + (["-o", str(work / f"x-{name}")] if what == "extract" else [])
                rows[(what, name)].append(run(cmd))
    res = {"ram": size, "cluster": a.cluster, "vm_state_size": state_size, "savevm_s": round(savevm, 2), "runs": {}}
    for (what, name), got in rows.items():
        best = min(w for w, _ in got)
        rss = max(r for _, r in got)
        res["runs"][f"{what} {name}"] = {"best_s": round(best, 3), "peak_rss_mb": round(rss / 1024, 1)}
        speed = state_size / best / 2**30
        print(f"{what:8} {name:6} best {best:6.2f} s  {speed:5.2f} GiB/s  peak RSS {rss / 1024:6.1f} MB")
    for what in ("info", "extract"):
        ratio = res["runs"][f"{what} qcow2"]["best_s"] / res["runs"][f"{what} plain"]["best_s"]
        res[f"{what}_ratio"] = round(ratio, 2)
        print(f"{what}: qcow2 / plain = {ratio:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
