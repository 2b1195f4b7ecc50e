#!/usr/bin/env python3
"""Record real QEMU's verdict (accept/reject + its error line) on every generated
corruption of the captures (tests/support/oracle.py), as a small zstd JSON table.

    # QEMU 11.1 (the wrappers in /work/qemu11/bin): first capture its own small
    # streams (samples/q11-*.mig.zst), then record its verdicts
    .venv/bin/python samples/oracle_verdicts.py --qemu 11.1 --capture
    .venv/bin/python samples/oracle_verdicts.py --qemu 11.1 --out samples/oracle-11.1.json.zst
    # QEMU 7.2 (installed): the same table for the 7.2 captures (not bundled: the
    # slow test runs QEMU live)
    .venv/bin/python samples/oracle_verdicts.py --qemu 7.2 --out /tmp/oracle-7.2.json.zst

Two QEMUs at most run at once (-j).  tests/qemu/test_qemu_oracle.py checks
`migstream validate` against the 11.1 table and against live QEMU 7.2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.oracle import QEMU11_TARGETS  # noqa: E402
from support.oracle import QEMU72_TARGETS  # noqa: E402
from support.oracle import qemu_verdict  # noqa: E402
from support.oracle import scratch  # noqa: E402
from support.oracle import target_corruptions  # noqa: E402
from support.qemu import Vm  # noqa: E402


def capture_q11() -> None:
    """Small QEMU 11.1 captures: a paused (-S) pc and an aarch64 virt, never run."""
    import zstandard

    from support.oracle import dummy_disk

    wd = scratch("q11-capture-")
    for t in QEMU11_TARGETS.values():
        disk = dummy_disk(wd)
        args = [a.replace("{disk}", str(disk)) for a in t.args] + ["-S"]
        out = wd / (t.sample + ".mig")
        with Vm(t.binary, args, wd, t.sample) as vm:
            vm.migrate_to_file(out)
            print(t.sample, vm.version(), out.stat().st_size, file=sys.stderr)
        (HERE / t.stream).write_bytes(zstandard.ZstdCompressor(level=19).compress(out.read_bytes()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qemu", choices=("7.2", "11.1"), required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--capture", action="store_true", help="11.1: capture samples/q11-*.mig.zst first")
    ap.add_argument("--sample", action="append", help="only these samples")
    ap.add_argument("-j", type=int, default=2)
    a = ap.parse_args()
    targets = QEMU11_TARGETS if a.qemu == "11.1" else QEMU72_TARGETS
    if a.capture:
        capture_q11()
        if not a.out:
            return
    wd = scratch()
    jobs = []
    for t in targets.values():
        if a.sample and t.sample not in a.sample:
            continue
        jobs += [(t, c) for c in target_corruptions(t, HERE)]

    def one(i_job):
        i, (t, c) = i_job
        path = wd / f"c{i}.mig"
        path.write_bytes(c.make())
        try:
            verdict, err = qemu_verdict(t, path, wd, f"q{i}")
        finally:
            path.unlink(missing_ok=True)
        return c.name, {"qemu": verdict, "error": err}

    t0 = time.monotonic()
    table = {}
    with ThreadPoolExecutor(a.j) as pool:
        for n, (name, row) in enumerate(pool.map(one, enumerate(jobs)), 1):
            table[name] = row
            if n % 50 == 0:
                print(f"{n}/{len(jobs)} {time.monotonic() - t0:.0f} s", file=sys.stderr)
    import zstandard

    data = json.dumps({"qemu": a.qemu, "verdicts": table}, indent=0, sort_keys=True).encode()
    a.out.write_bytes(zstandard.ZstdCompressor(level=19).compress(data) if a.out.suffix == ".zst" else data)
    print(f"{len(table)} verdicts in {time.monotonic() - t0:.0f} s -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
