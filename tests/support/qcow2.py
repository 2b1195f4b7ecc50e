"""qcow2 internal snapshots made by real QEMU: the test guest booted from a qcow2 disk,
``stop`` + HMP ``savevm`` twice (the guest runs in between, so the two states differ),
and the truth: the RAM QEMU restores with ``-loadvm NAME`` (paused with -S, read with
pmemsave).  Used by tests/qemu/test_qemu_qcow2.py (QEMU 7.2) and
samples/make_qcow2_samples.py (QEMU 11.1, bundled).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from .qemu import MiB
from .qemu import Vm
from .qemu import build_guest

SNAPSHOTS = ("snap1", "snap2")


def make_image(
    qemu: str, qemu_img: str, work: Path, name: str, *, cluster_size: str = "64k", disk_size: str = "1M", options=()
) -> Path:
    """The test guest's boot disk as a qcow2 image of ``disk_size`` (virtual) with
    two snapshots holding VM state."""
    work = Path(work)
    raw = build_guest(work)
    image = work / f"{name}.qcow2"
    opts = ",".join([f"cluster_size={cluster_size}", *options])
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", "-o", opts, str(raw), str(image)], check=True)
    if disk_size != "1M":
        subprocess.run([qemu_img, "resize", "-f", "qcow2", str(image), disk_size], check=True, capture_output=True)
    args = ["-M", "pc", "-m", "64M", "-drive", f"file={image},format=qcow2,if=ide"]
    with Vm(qemu, args, work, f"{name}-save") as vm:
        after = vm.wait_serial("migstream guest ready", timeout=60)
        for snap in SNAPSHOTS:
            after = vm.wait_serial("migstream guest tick", after=after, timeout=60)
            vm.cmd("stop")
            out = vm.hmp(f"savevm {snap}")
            assert not out.strip(), f"savevm {snap}: {out}"
            vm.cmd("cont")
            time.sleep(0.3)
    return image


def loadvm_ram(qemu: str, image: Path, snap: str, work: Path, ram_mib: int = 64) -> bytes:
    """The RAM QEMU restores from ``snap`` (``-loadvm``, paused), read with pmemsave.
    Runs on a copy: loadvm rewrites the image's active L1 table."""
    work = Path(work)
    copy = work / f"loadvm-{snap}-{image.name}"
    shutil.copyfile(image, copy)
    args = ["-M", "pc", "-m", f"{ram_mib}M", "-drive", f"file={copy},format=qcow2,if=ide", "-loadvm", snap, "-S"]
    try:
        with Vm(qemu, args, work, f"loadvm-{snap}") as vm:
            return vm.pmemsave(0, ram_mib * MiB, work / f"loadvm-{snap}.ram")
    finally:
        copy.unlink(missing_ok=True)


def qemu_img_snapshots(qemu_img: str, image: Path) -> list[dict]:
    """``qemu-img info --output=json``'s snapshot list (id, name, vm-state-size, ...)."""
    out = subprocess.run(
        [qemu_img, "info", "--output=json", "-U", str(image)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out).get("snapshots", [])
