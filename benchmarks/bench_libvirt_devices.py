#!/usr/bin/env python3
"""Speed of the libvirt save-image sources and of `devices` (best of 3).

    python benchmarks/bench_libvirt_devices.py [--analyze PATH/analyze-migration.py]

1. For every committed libvirt image: seconds to read the QEMU stream through the
   source (decompression only) and to decode it fully (every event), as MB/s of
   QEMU stream.
2. `devices` (device_states) on the raw samples against analyze-migration.py
   `-d state` on the same file, when the script is given (it is run as a subprocess,
   so its time includes interpreter start; ours is measured in process and via the CLI).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from migstream.containers.sources import StreamSource  # noqa: E402
from migstream.containers.stream import iter_events  # noqa: E402
from migstream.containers.stream import open_decoder  # noqa: E402
from migstream.tools.devices import device_states  # noqa: E402

SAMPLES = os.path.join(ROOT, "samples")


def best(fn, n=3):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        t.append(time.perf_counter() - t0)
    return min(t), r


def read_all(path):
    with StreamSource(path) as s:
        return sum(len(c) for c in s.chunks())


def decode_all(path):
    with StreamSource(path) as s:
        d = open_decoder(s)
        return sum(1 for _ in iter_events(s, d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--analyze", default="/var/tmp/migstream-bench/qemu-scripts/analyze-migration.py")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-lvd-")
    raw = os.path.join(tmp, "libvirt-raw.img")
    with open(os.path.join(SAMPLES, "libvirt-raw.img.zst"), "rb") as f, open(raw, "wb") as o:
        zstandard.ZstdDecompressor().copy_stream(f, o)
    images = [raw] + [os.path.join(SAMPLES, f"libvirt-{x}.img") for x in ("gzip", "bzip2", "xz", "lzop", "zstd")]
    print("| image | stream MB | read s | read MB/s | decode s | decode MB/s |")
    print("|---|---|---|---|---|---|")
    for img in images:
        tr, n = best(lambda img=img: read_all(img))
        td, _ = best(lambda img=img: decode_all(img))
        mb = n / 1e6
        print(f"| {os.path.basename(img)} | {mb:.1f} | {tr:.3f} | {mb / tr:.0f} | {td:.3f} | {mb / td:.0f} |")

    print()
    print("| stream | sections | devices (in process) s | migstream devices CLI s | analyze-migration.py -d state s |")
    print("|---|---|---|---|---|")
    for name in ("x86-stopped", "x86-q35"):
        path = os.path.join(tmp, name + ".mig")
        with open(os.path.join(SAMPLES, name + ".mig.zst"), "rb") as f, open(path, "wb") as o:
            zstandard.ZstdDecompressor().copy_stream(f, o)
        t_in, doc = best(lambda path=path: device_states(path))
        t_cli, _ = best(
            lambda path=path: subprocess.run(
                [sys.executable, "-m", "migstream.cli", "devices", "--json", path],
                capture_output=True,
                check=True,
                cwd=ROOT,
            )
        )
        t_am = "n/a"
        if os.path.exists(a.analyze):
            t, _ = best(
                lambda path=path: subprocess.run(
                    [sys.executable, a.analyze, "-f", path, "-d", "state"], capture_output=True, check=True
                )
            )
            t_am = f"{t:.3f}"
        print(f"| {name} | {len(doc['sections'])} | {t_in:.3f} | {t_cli:.3f} | {t_am} |")


if __name__ == "__main__":
    main()
