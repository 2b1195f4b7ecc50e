#!/usr/bin/env python3
"""Damage to a real qcow2 image with internal snapshots (made by QEMU 11.1,
samples/q11-qcow2-*.qcow2.zst): random bytes, bit flips and all-ones in its metadata
(header, snapshot table, each snapshot's L1 table, the L2 tables its VM state goes
through) and truncations.  Every damaged image must open and read the VM state of
each snapshot, or fail with one Qcow2Error / UsageError line; within 5 s per input,
under a hard address-space cap (resource.RLIMIT_AS).  The stream read back is fed to
the decoder too (its own contract: StreamError).

    python fuzz/qcow2_sweeps.py --count 300 --seed 1 --mem-mb 768

Prints one JSON summary line; exit status 1 on any violation.  tests/unit/test_qcow2_hostile.py
runs a bounded sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sweeps import _alarm  # noqa: E402  (fuzz/ is on sys.path)
from sweeps import _Timeout  # noqa: E402  (fuzz/ is on sys.path)
from sweeps import limit_memory  # noqa: E402  (fuzz/ is on sys.path)

SAMPLE = HERE.parent / "samples" / "q11-qcow2-64k-6g-zstd.qcow2.zst"


def metadata_ranges(path: str) -> list[tuple[int, int]]:
    """(start, end) of the bytes that steer the reader, from the intact image."""
    from migstream.containers.qcow2 import OFFSET_MASK
    from migstream.containers.qcow2 import Qcow2Image

    with open(path, "rb") as f:
        img = Qcow2Image(f.fileno(), path)
        fd = f.fileno()
        head = os.pread(fd, 72, 0)
        table = struct.unpack_from(">Q", head, 64)[0]
        last = img.snapshots[-1]
        out = [(0, 112), (table, last.entry_offset + 64 + 40)]
        for s in img.snapshots:
            out.append((s.l1_table_offset, s.l1_table_offset + s.l1_size * 8))
            l1_index = img.vm_state_offset(s) >> (img.cluster_bits + img.l2_bits)
            if l1_index < s.l1_size:
                l1 = struct.unpack_from(">Q", os.pread(fd, 8, s.l1_table_offset + 8 * l1_index))[0]
                l2 = l1 & OFFSET_MASK
                if l2:
                    out.append((l2, l2 + 8 * 200))  # the entries of the state's first clusters
    return out


def check(path: str) -> str:
    """'ok', 'error: ...' (the contract) or raises (a violation)."""
    from migstream.containers.sources import StreamSource
    from migstream.containers.stream import iter_events
    from migstream.containers.stream import open_decoder
    from migstream.errors import MigstreamError
    from migstream.errors import StreamError
    from migstream.errors import UsageError

    with open(path, "rb") as f:
        from migstream.containers.qcow2 import Qcow2Image

        try:
            ids = [s.id for s in Qcow2Image(f.fileno(), path).snapshots if s.vm_state_size]
        except UsageError as exc:
            return f"error: {exc}"
    outcome = "ok"
    for ident in ids or ["1"]:
        try:
            with StreamSource(f"{path}@{ident}") as source:
                decoder = open_decoder(source)
                for _ in iter_events(source, decoder):
                    pass
        except (UsageError, StreamError) as exc:
            if "\n" in str(exc):
                raise AssertionError(f"error of more than one line: {exc!r}") from exc
            outcome = f"error: {exc}"
        except MigstreamError as exc:
            outcome = f"error: {exc}"
    return outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--truncations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mem-mb", type=int, default=768)
    a = ap.parse_args()
    import zstandard

    rnd = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="q2fuzz-")
    path = os.path.join(tmp, "image.qcow2")
    with open(SAMPLE, "rb") as src, open(path, "wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    ranges = metadata_ranges(path)
    size = os.path.getsize(path)
    limit_memory(a.mem_mb)
    signal.signal(signal.SIGALRM, _alarm)
    counts = {"ok": 0, "error": 0}
    violations = []
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(a.count + a.truncations):
            if i < a.count:
                lo, hi = rnd.choice(ranges)
                at = rnd.randrange(lo, hi)
                n = rnd.choice((1, 1, 1, 2, 4, 8))
                old = os.pread(fd, n, at)
                how = rnd.choice(("random", "flip", "ones", "zero"))
                if how == "random":
                    new = bytes(rnd.randrange(256) for _ in old)
                elif how == "flip":
                    new = bytes(b ^ (1 << rnd.randrange(8)) for b in old)
                else:
                    new = (b"\xff" if how == "ones" else b"\0") * len(old)
                os.pwrite(fd, new, at)
                what = f"{how} {new.hex()} at 0x{at:x}"
            else:
                cut = rnd.randrange(0, size)
                tail = os.pread(fd, size - cut, cut)
                os.ftruncate(fd, cut)
                what = f"truncated at 0x{cut:x}"
            signal.alarm(5)
            try:
                outcome = check(path)
                counts["ok" if outcome == "ok" else "error"] += 1
            except _Timeout:
                violations.append(f"{what}: more than 5 s")
            except BaseException as exc:  # noqa: BLE001 - every other exception breaks the contract
                violations.append(f"{what}: {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
            if i < a.count:
                os.pwrite(fd, old, at)
            else:
                os.pwrite(fd, tail, cut)
    finally:
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"inputs": a.count + a.truncations, **counts, "violation_count": len(violations)}
    summary["violations"] = violations[:20]
    print(json.dumps(summary))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
