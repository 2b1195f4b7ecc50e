#!/usr/bin/env python3
"""Systematic damage to real samples: truncation at every byte, bit flips in
headers, lengths and flags.  Every damaged stream must decode or fail with the
library's StreamError carrying an offset (fuzz/harness.py's contract), within a
time bound per input, under a hard address-space cap (resource.RLIMIT_AS), so an
allocation driven by a hostile length would fail the run instead of the machine.

    python fuzz/sweeps.py --sample x86-fresh-S --truncate all --flips 100000
    python fuzz/sweeps.py --sample x86-fresh-S --truncate 0:16384,-8192: --flips 400 --seed 1

Prints one JSON summary line; exit status 1 on any violation (listed in the summary).
tests/unit/test_fuzz.py runs a bounded sweep; run long ones by hand (see docs/testing.md).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "unit"))


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def limit_memory(megabytes: int) -> None:
    cap = megabytes << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def structural_positions(data: bytes) -> dict[str, list[int]]:
    """Byte positions of headers, lengths and flags, found by decoding the intact
    stream (events carry offsets).  Keys name what the bytes are."""
    from harness import decode

    from migstream.events import CommandEvent
    from migstream.events import Configuration
    from migstream.events import PageRecord
    from migstream.events import PageRun
    from migstream.events import RamBlockList
    from migstream.events import RamMarker
    from migstream.events import SectionEnd
    from migstream.events import SectionStart
    from migstream.events import VmDescription
    from migstream.wire import grammar as g

    pos: dict[str, list[int]] = {
        "section header": [],
        "footer": [],
        "ram flags": [],
        "ram addr": [],
        "length": [],
        "command": [],
        "block list": [],
    }
    for ev in decode(data):
        t = type(ev)
        if t is SectionStart:
            n = 5 + (1 + len(ev.idstr) + 8 if ev.type in (g.SectionType.START, g.SectionType.FULL) else 0)
            pos["section header"] += range(ev.offset, ev.offset + n)
            if ev.type in (g.SectionType.START, g.SectionType.FULL):
                pos["length"].append(ev.offset + 5)  # idstr length
        elif t is SectionEnd and ev.footer:
            pos["footer"] += range(ev.offset, ev.offset + 5)
        elif t is Configuration:
            pos["length"] += range(ev.offset + 1, ev.offset + 5)
        elif t is CommandEvent:
            pos["command"] += range(ev.offset, ev.offset + 5)
        elif t is VmDescription:
            pos["length"] += range(ev.offset, ev.offset + 5)
        elif t is RamBlockList:
            pos["ram flags"] += range(ev.offset + 6, ev.offset + 8)
            p = ev.offset + 8
            for b in ev.blocks:
                pos["length"].append(p)
                pos["block list"] += range(p + 1 + len(b.name), p + 9 + len(b.name))
                p += 9 + len(b.name)
        elif t is RamMarker:
            pos["ram flags"] += range(ev.offset + 6, ev.offset + 8)
        elif t in (PageRecord, PageRun):
            recs = [ev] if t is PageRecord else [next(ev.records())]
            for r in recs:
                pos["ram addr"] += range(r.offset, r.offset + 6)
                pos["ram flags"] += range(r.offset + 6, r.offset + 8)
                if r.payload_offset > r.offset + 8:
                    pos["length"].append(r.offset + 8)  # block name length
                kind = r.flags & ~g.RamFlag.CONTINUE
                if kind == g.RamFlag.XBZRLE:
                    pos["length"] += range(r.payload_offset, r.payload_offset + 3)
                elif kind == g.RamFlag.COMPRESS_PAGE:
                    pos["length"] += range(r.payload_offset, r.payload_offset + 4)
    return pos


def run(data: bytes, truncations, flips: int, seed: int, per_input: float) -> dict:
    from harness import check

    signal.signal(signal.SIGALRM, _alarm)
    violations: list[dict] = []
    stats = {"inputs": 0, "ok": 0, "stream_error": 0, "slowest_s": 0.0}

    def one(kind: str, damaged: bytes, where: int, **extra) -> None:
        stats["inputs"] += 1
        t = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, per_input)
        try:
            err = check(damaged)
        except _Timeout:
            violations.append({"kind": kind, "at": where, **extra, "error": f"no result within {per_input} s"})
            return
        except BaseException as exc:  # noqa: BLE001 - anything else is a finding
            violations.append({"kind": kind, "at": where, **extra, "error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        stats["slowest_s"] = max(stats["slowest_s"], time.monotonic() - t)
        stats["stream_error" if err else "ok"] += 1
        if kind == "truncate" and err is None and where < eof_end:
            violations.append({"kind": kind, "at": where, "error": "a cut before the end of EOF was accepted"})
        if kind == "truncate" and err is not None and err.offset > where:
            violations.append({"kind": kind, "at": where, "error": f"error offset 0x{err.offset:x} past the cut"})

    from harness import decode

    from migstream.events import EndOfStream

    eof_end = next(ev.offset for ev in decode(data) if type(ev) is EndOfStream) + 1

    for cut in truncations:
        one("truncate", data[:cut], cut)
    rnd = random.Random(seed)
    positions = structural_positions(data)
    kinds = [k for k, v in positions.items() if v]
    for _ in range(flips):
        what = rnd.choice(kinds)
        at = rnd.choice(positions[what])
        bit = rnd.randrange(8)
        damaged = bytearray(data)
        damaged[at] ^= 1 << bit
        one("flip", bytes(damaged), at, bit=bit, field=what)
    return {**stats, "violations": violations[:50], "violation_count": len(violations)}


def parse_truncations(spec: str, size: int) -> list[int]:
    """ "all", or comma-separated slices "a:b" / "-n:" of byte positions."""
    if spec == "all":
        return list(range(size))
    out: list[int] = []
    for part in filter(None, spec.split(",")):
        a, _, b = part.partition(":")
        out += range(size)[slice(int(a) if a else None, int(b) if b else None)]
    return sorted(set(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", default="x86-fresh-S", help="name in samples/samples.json")
    ap.add_argument("--truncate", default="", help='"all" or slices like "0:16384,-8192:"')
    ap.add_argument("--flips", type=int, default=0, help="random bit flips in structural bytes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-input", type=float, default=5.0, help="seconds allowed per damaged stream")
    ap.add_argument("--mem-mb", type=int, default=1024, help="address-space cap (RLIMIT_AS) in MiB")
    args = ap.parse_args(argv)

    from support.samples import raw_stream
    from support.samples import sample_by_name

    data = raw_stream(sample_by_name(args.sample))
    limit_memory(args.mem_mb)  # after loading the sample: every decode runs under the cap
    t = time.monotonic()
    summary = run(data, parse_truncations(args.truncate, len(data)), args.flips, args.seed, args.per_input)
    summary.update(
        sample=args.sample,
        size=len(data),
        seconds=round(time.monotonic() - t, 1),
        mem_cap_mb=args.mem_mb,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
    )
    print(json.dumps(summary))
    return 1 if summary["violation_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
