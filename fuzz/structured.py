#!/usr/bin/env python3
"""Structure-aware fuzzing without coverage feedback, for long runs: valid streams
of every element kind (built from the grammar by tests/unit/test_kaitai.py's builder),
damaged by random mutations (tests/unit/test_fuzz.py's), checked against the contract
(fuzz/harness.py).  tests/unit/test_fuzz.py runs the same idea through hypothesis.

    python fuzz/structured.py [--inputs N] [--seconds S] [--seed K]

Prints a JSON summary; a violation is saved to fuzz/artifacts/structured-*.bin
(first byte: the feeding mode, as for fuzz_decoder.py) and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "unit"))

from harness import check  # noqa: E402
from harness import check_extract  # noqa: E402
from test_fuzz import mutate  # noqa: E402
from test_kaitai import BLOCKS  # noqa: E402
from test_kaitai import build_full_stream  # noqa: E402

DEVICES = ["timer", "cpu_common", "0000:00:02.0/e1000", "ram"]
COMMANDS = ["ping", "open_return_path", "advise", "advise0", "discard", "recv_bitmap", "switchover", "listen", "run"]
MUTATIONS = ["flip", "byte", "delete", "insert", "truncate", "duplicate"]


def random_element(rnd: random.Random, depth: int = 0):
    r = rnd.random()
    if r < 0.4:
        recs = []
        for _ in range(rnd.randint(0, 6)):
            if rnd.random() < 0.3:
                kind, start = rnd.choice(["page", "zero"]), rnd.randint(0, 60)
                recs += [(kind, rnd.randint(0, 1), start + i) for i in range(rnd.randint(2, 70))]
            else:
                recs.append(
                    (
                        rnd.choice(["page", "zero", "zero", "xbzrle", "compress", "flush"]),
                        rnd.randint(0, len(BLOCKS) - 1),
                        rnd.randint(0, 100),
                    )
                )
        return ("ram", recs)
    if r < 0.65:
        return ("device", rnd.choice(DEVICES), rnd.randint(0, 3), rnd.randbytes(rnd.randint(0, 200)))
    if r < 0.9 or depth:
        return ("command", rnd.choice(COMMANDS))
    return (
        "packaged",
        [random_element(rnd, 1) for _ in range(rnd.randint(0, 4))],
        rnd.random() < 0.5,
        rnd.randbytes(rnd.randint(0, 8)),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=300, help="valid streams to mutate")
    ap.add_argument("--extract-every", type=int, default=10, help="also run the extract job on every Nth input")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    pool = [
        build_full_stream(
            [random_element(rnd) for _ in range(rnd.randint(0, 6))],
            rnd.getrandbits(32),
            rnd.choice([4096, 1024, 8192]),
            rnd.random() < 0.5,
        )
        for _ in range(args.pool)
    ]
    t0 = time.monotonic()
    stats = {"inputs": 0, "ok": 0, "stream_error": 0, "violations": 0, "extracts": 0}
    import tempfile

    workdir = tempfile.mkdtemp(prefix="migstream-fuzz-")
    while stats["inputs"] < args.inputs and time.monotonic() - t0 < args.seconds:
        muts = [
            (rnd.choice(MUTATIONS), rnd.random(), rnd.randrange(256), rnd.randint(1, 64))
            for _ in range(rnd.randint(1, 4))
        ]
        data, mode = mutate(rnd.choice(pool), muts), rnd.randrange(256)
        stats["inputs"] += 1
        try:
            stats["stream_error" if check(data, mode) else "ok"] += 1
            if args.extract_every and stats["inputs"] % args.extract_every == 0:
                stats["extracts"] += 1
                check_extract(data, workdir)
        except Exception as exc:  # noqa: BLE001 - a finding
            stats["violations"] += 1
            out = HERE / "artifacts" / f"structured-{args.seed}-{stats['inputs']}.bin"
            out.parent.mkdir(exist_ok=True)
            out.write_bytes(bytes([mode]) + data)
            print(f"violation: {type(exc).__name__}: {exc} -> {out}", file=sys.stderr)
    stats["seconds"] = round(time.monotonic() - t0, 1)
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(stats))
    return 1 if stats["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
