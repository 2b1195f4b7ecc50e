#!/usr/bin/env python3
"""Capture QEMU 7.2 streams with the block-device capabilities: samples x86-block
(capabilities block + zero-blocks: disks in the "block" section) and
x86-dirty-bitmaps (capability dirty-bitmaps: the "dirty-bitmap" section and a
POSTCOPY_ADVISE of length 0).

Usage:  python samples/make_block_samples.py [--only NAME,...] [--out samples/]

Both VMs are stopped from the start (-S: RAM holds only the firmware, which keeps the
samples small) and have a 3 MiB raw disk with a known content (text, zeros, text
and random bytes) as a virtio-blk drive "d1", beside the guest's boot disk.  Truth:
pmemsave of pc.ram and pc.bios, and for x86-block the disk image itself (what the
destination's disk holds after the load).  Reuses make_samples.py and
make_samples_v2.py's helpers.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_samples as ms  # noqa: E402
import make_samples_v2 as v2  # noqa: E402

MiB = ms.MiB
QEMU = "qemu-system-x86_64"

SAMPLES = [
    dict(
        name="x86-block",
        mode="image",
        caps=["block", "zero-blocks"],
        params={"max-bandwidth": 256 * MiB},
        notes="QEMU 7.2 block migration (capabilities block + zero-blocks), stopped VM: the 3 MiB "
        "disk d1 and the 1 MiB boot disk ide0-hd0 travel in the 'block' section in 1 MiB "
        "chunks (d1's all-zero second MiB as a ZERO_BLOCK record).",
    ),
    dict(
        name="x86-dirty-bitmaps",
        mode="image",
        caps=["dirty-bitmaps"],
        params={},
        bitmap={"node": "n1", "name": "bm0", "persistent": False},
        notes="QEMU 7.2 capability dirty-bitmaps with one non-persistent bitmap on disk d1 "
        "(block-dirty-bitmap-add), stopped VM: a 'dirty-bitmap' section (START and END) "
        "and MIG_CMD_POSTCOPY_ADVISE with length 0 (dirty-bitmap-only postcopy).",
    ),
]


def make_disk(path):
    """3 MiB: text, zeros, text ending in 32 KiB of random bytes (seeded; small, to keep
    the sample small)."""
    text = (b"a disk chunk for the block migration sample; " * 30000)[:MiB]
    data = text + bytes(MiB) + text[: MiB - 32768] + random.Random(3).randbytes(32768)
    with open(path, "wb") as f:
        f.write(data)
    return data


def capture(s, out, workdir, guest_img):
    name = s["name"]
    disk = os.path.join(workdir, f"{name}.disk.raw")
    disk_data = make_disk(disk)
    args = [
        "-M",
        "pc",
        "-m",
        "32M",
        "-drive",
        f"file={guest_img},format=raw,if=ide,snapshot=on",
        "-drive",
        f"file={disk},format=raw,if=none,id=d1,node-name=n1",
        "-device",
        "virtio-blk-pci,drive=d1",
        "-S",
    ]
    raw = os.path.join(workdir, f"{name}.mig")
    q = ms.Qemu(QEMU, args, workdir, name)
    try:
        if s.get("bitmap"):
            r = q.qmp.cmd_raw("block-dirty-bitmap-add", s["bitmap"])
            if "error" in r:
                raise RuntimeError(f"block-dirty-bitmap-add: {r['error']}")
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in s["caps"]])
        if s["params"]:
            q.cmd("migrate-set-parameters", **s["params"])
        blocks = ms.ramblocks(q)
        q.cmd("migrate", uri=f"exec:cat > {raw}")
        final, notes = ms.wait_migration(q, s)
        truths, truths_raw = v2.take_truth(q, blocks, workdir, name)
        version = q.cmd("query-version")
    finally:
        q.close()
    v2.store_truth(out, truths_raw)
    ms.zstd(raw, os.path.join(out, f"{name}.mig.zst"))
    entry = {
        "name": name,
        "stream": f"{name}.mig.zst",
        "stream_size": os.path.getsize(raw),
        "machine": "pc",
        "machine_type_in_stream": "pc-i440fx-7.2",
        "arch": "x86_64",
        "qemu_version": f"{version['qemu']['major']}.{version['qemu']['minor']}.{version['qemu']['micro']}"
        f" {version.get('package', '').strip()}".strip(),
        "capabilities": s["caps"],
        "parameters": s["params"],
        "transport": "exec:cat > FILE",
        "ram_block": "pc.ram",
        "ram_size": 32 * MiB,
        "ram_blocks": blocks,
        "truth": truths,
        "query_migrate": final,
        "qemu_cmdline": " ".join(a.replace(workdir + "/", "") for a in q.cmdline),
        "notes": s["notes"] + (" " + " ".join(notes) if notes else ""),
    }
    if "block" in s["caps"]:
        with open(os.path.join(workdir, f"{name}.disk.bin"), "wb") as f:
            f.write(disk_data)
        ms.zstd(os.path.join(workdir, f"{name}.disk.bin"), os.path.join(out, f"{name}.disk.zst"))
        entry["disks"] = [
            {
                "device": "d1",
                "file": f"{name}.disk.zst",
                "length": len(disk_data),
                "source": "the source's disk image (raw)",
            }
        ]
    return entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated sample names")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    names = a.only.split(",") if a.only else [s["name"] for s in SAMPLES]
    workdir = tempfile.mkdtemp(prefix="migblock-")
    manifest_path = os.path.join(out, "samples.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else []
    try:
        guest_img = ms.build_guest(workdir)
        for s in SAMPLES:
            if s["name"] not in names:
                continue
            entry = capture(s, out, workdir, guest_img)
            manifest = [m for m in manifest if m["name"] != entry["name"]] + [entry]
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=1)
                f.write("\n")
            ms.log(f"{entry['name']}: {entry['stream_size']} bytes")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
