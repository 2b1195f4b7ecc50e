#!/usr/bin/env python3
"""Coverage-guided fuzzing of the packet-capture reader (containers/pcap) with atheris.

The contract: for any input file, opening it as a capture and reading every connection
of every migration either succeeds or raises the library's own MigstreamError (a
one-line message with a file or stream offset); nothing else escapes, nothing hangs
(-timeout), nothing grows without bound (-rss_limit_mb).  The reader maps a file, so
each input is written to a file in /dev/shm (or the temp directory) first.

    python fuzz/fuzz_pcap.py --seeds SEED_DIR          # seed corpus: the bundled captures, cut
    python fuzz/fuzz_pcap.py CORPUS_DIR [SEED_DIR] [libFuzzer options]
    python fuzz/fuzz_pcap.py fuzz/artifacts/crash-...   # replay one input
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["migstream"]):
    from migstream.containers.pcap import PacketCapture
    from migstream.errors import MigstreamError

ROOT = Path(__file__).resolve().parents[1]
_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PATH = os.path.join(_DIR, f"migstream-fuzz-pcap-{os.getpid()}")


def one_input(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        cap = PacketCapture(_PATH)
        for m in cap.migrations:
            for c in [m.main, *m.multifd, *m.preempt]:
                for _chunk in cap.reader(c.forward).chunks():
                    pass
            cap.describe()
    except MigstreamError:
        pass


def write_seeds(directory: Path) -> int:
    import zstandard

    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in sorted((ROOT / "samples").glob("pcap-*.pcap*.zst")):
        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f).read(32768)
        (directory / path.name.removesuffix(".zst")).write_bytes(data)
        n += 1
    return n


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        print(f"{write_seeds(Path(sys.argv[2]))} seeds in {sys.argv[2]}")
        return
    try:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
    finally:
        if os.path.exists(_PATH):
            os.unlink(_PATH)


if __name__ == "__main__":
    main()
