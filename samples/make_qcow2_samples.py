#!/usr/bin/env python3
"""qcow2 images with two internal snapshots made by QEMU 11.1, plus their truth.

Usage:  python samples/make_qcow2_samples.py [--qemu DIR] [--out-dir DIR]

DIR of --qemu holds qemu-system-x86_64 and qemu-img (default /work/qemu11/bin: the
wrappers around a trixie chroot with QEMU 11.1.3, see ../shared/qemu-facts.md; the
work folder is made under /var/tmp because only /work, /tmp and /var/tmp are visible
inside that chroot).  For each image (tests/support/qcow2.py): the test guest boots
from the qcow2 disk, ``stop`` + ``savevm snap1``, ``cont``, ..., ``savevm snap2``; then
for each snapshot a paused QEMU started with ``-loadvm NAME`` on a copy of the image
gives the RAM (pmemsave of 64 MiB).  Written to --out-dir (default samples/):
<name>.qcow2.zst, <name>.<snap>.ram.zst and <name>.qemu-img.json (``qemu-img info
--output=json``'s snapshot list), all zstd -19.  tests/samples/test_qcow2.py reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from support.qcow2 import SNAPSHOTS  # noqa: E402  (tests/ is put on sys.path just above)
from support.qcow2 import loadvm_ram  # noqa: E402  (tests/ is put on sys.path just above)
from support.qcow2 import make_image  # noqa: E402  (tests/ is put on sys.path just above)
from support.qcow2 import qemu_img_snapshots  # noqa: E402  (tests/ is put on sys.path just above)

#: name -> (cluster size, virtual disk size, qcow2 creation options)
IMAGES = {
    "q11-qcow2-64k-6g-zstd": ("64k", "6G", ("compression_type=zstd",)),
    "q11-qcow2-2m-extl2": ("2M", "1M", ("extended_l2=on",)),
}


def zstd(src: Path, dst: Path) -> None:
    subprocess.run(["zstd", "-q", "-f", "-19", "-T0", str(src), "-o", str(dst)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", default="/work/qemu11/bin")
    ap.add_argument("--out-dir", default=str(HERE))
    a = ap.parse_args()
    qemu = os.path.join(a.qemu, "qemu-system-x86_64")
    qemu_img = os.path.join(a.qemu, "qemu-img")
    out = Path(a.out_dir)
    with tempfile.TemporaryDirectory(prefix="mq-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        for name, (cluster, disk, options) in IMAGES.items():
            image = make_image(qemu, qemu_img, work, name, cluster_size=cluster, disk_size=disk, options=options)
            snaps = qemu_img_snapshots(qemu_img, image)
            (out / f"{name}.qemu-img.json").write_text(json.dumps(snaps, indent=1) + "\n")
            for snap in SNAPSHOTS:
                ram = work / f"{name}.{snap}.ram"
                ram.write_bytes(loadvm_ram(qemu, image, snap, work))
                zstd(ram, out / f"{name}.{snap}.ram.zst")
            zstd(image, out / f"{name}.qcow2.zst")
            print(name, image.stat().st_size, "bytes,", len(snaps), "snapshots")


if __name__ == "__main__":
    main()
