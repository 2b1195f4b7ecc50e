#!/usr/bin/env python3
"""Real `virsh save` images (libvirt 9.0.0 + QEMU 7.2, Debian 12), one per format.

Usage (as root, libvirtd started by hand, see samples/README.md):
    python samples/make_libvirt_samples.py [--out samples/] [--work /var/tmp/lvd-samples]

What it does
  1. builds the test guest (samples/guest/guest.asm), creates a transient TCG
     domain (type='qemu', pc machine, 64 MiB, serial to a file) and waits for
     "migstream guest ready";
  2. `virsh save` of the running domain with qemu.conf's default format (raw):
     was_running = 1;
  3. `virsh restore --paused` of that image and `pmemsave` of pc.ram and pc.bios
     through `virsh qemu-monitor-command --hmp`: the truth is what real QEMU
     loads from the image (a destination load, like make_samples.py's verify);
  4. for every compressed format (gzip, bzip2, xz, lzop, zstd): rewrites
     save_image_format in /etc/libvirt/qemu.conf, restarts libvirtd (the pid in
     /run/libvirtd.pid, i.e. the daemon started by hand), `virsh save` of the
     still-paused restored domain (was_running = 0), `virsh restore --paused` of
     the new image, and checks that its pmemsave equals the truth;
  5. writes libvirt-raw.img.zst (the raw image, zstd -19), libvirt-<fmt>.img
     (compressed images as libvirt wrote them: their QEMU stream is already
     compressed), libvirt.ram.zst (pc.ram truth) and entries in samples.json
     ("kind": "libvirt-save"; "stream" is the image file).
The guest never runs after step 2, so every image carries the same RAM.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_samples import X86_EXCLUDE, build_guest, zstd  # noqa: E402

QEMU_CONF = "/etc/libvirt/qemu.conf"
DOMAIN = "migstream-lvd"
UUID = "6d6967a5-7472-4561-8d00-6c7664000001"
RAM = 64 << 20
BIOS = 256 << 10
# What libvirt 9.0.0 accepts as save_image_format (zstd, format 5, came later).
FORMATS = ["gzip", "bzip2", "xz", "lzop"]


def log(*a):
    print("[make_libvirt_samples]", *a, flush=True)


def virsh(*args, check=True):
    r = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def domain_xml(work, img, serial):
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <uuid>{UUID}</uuid>
  <memory unit='KiB'>{RAM >> 10}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def set_format(fmt):
    text = open(QEMU_CONF).read()
    text = re.sub(r"(?m)^save_image_format = .*\n", "", text)
    if fmt != "raw":
        text += f'save_image_format = "{fmt}"\n'
    with open(QEMU_CONF, "w") as f:
        f.write(text)


def restart_libvirtd():
    try:
        pid = int(open("/run/libvirtd.pid").read().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    subprocess.run(["libvirtd", "-d"], check=True)
    for _ in range(100):
        if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("libvirtd did not come back")


def pmemsave(path, addr, size):
    virsh(
        "qemu-monitor-command",
        DOMAIN,
        json.dumps({"execute": "pmemsave", "arguments": {"val": addr, "size": size, "filename": path}}),
    )
    for _ in range(50):
        if os.path.exists(path) and os.path.getsize(path) == size:
            return open(path, "rb").read()
        time.sleep(0.1)
    raise RuntimeError(f"pmemsave {path} incomplete")


def header_fields(path):
    with open(path, "rb") as f:
        head = f.read(92)
    version, data_len, was_running, fmt, cookie = __import__("struct").unpack_from("<5I", head, 16)
    return {
        "magic": head[:16].decode(),
        "version": version,
        "data_len": data_len,
        "was_running": was_running,
        "format": fmt,
        "cookie_offset": cookie,
    }


def build_zstd_image(raw_image, out):
    """Format 5 (zstd) as newer libvirt writes it (qemu_saveimage.c: the stream goes
    through `zstd -c`; restore runs `zstd -dc`): the real raw image's header with
    format = 5 and its real QEMU stream compressed.  Built, not saved by libvirt."""
    import struct

    with open(raw_image, "rb", buffering=0) as f:  # unbuffered: zstd reads the same fd
        head = bytearray(f.read(92))
        (data_len,) = struct.unpack_from("<I", head, 20)
        xml = f.read(data_len)
        struct.pack_into("<I", head, 28, 5)
        with open(out, "wb") as o:
            o.write(head + xml)
            o.flush()
            subprocess.run(["zstd", "-q", "-c", "-3"], stdin=f, stdout=o, check=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--work", default="/var/tmp/lvd-samples")
    a = ap.parse_args()
    work = a.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    img = build_guest(work)
    serial = os.path.join(work, "serial.log")
    xml = os.path.join(work, "domain.xml")
    with open(xml, "w") as f:
        f.write(domain_xml(work, img, serial))
    original_conf = open(QEMU_CONF).read()
    entries = []
    try:
        set_format("raw")
        restart_libvirtd()
        virsh("destroy", DOMAIN, check=False)
        virsh("create", xml)
        t0 = time.time()
        while "migstream guest ready" not in (open(serial, errors="replace").read() if os.path.exists(serial) else ""):
            if time.time() - t0 > 60:
                raise RuntimeError("guest did not print ready")
            time.sleep(0.2)
        time.sleep(1.5)
        version = virsh("version")
        raw = os.path.join(work, "libvirt-raw.img")
        log("virsh save (raw, running domain)")
        virsh("save", DOMAIN, raw)
        virsh("restore", raw, "--paused")
        truth = pmemsave(os.path.join(work, "truth-ram.bin"), 0, RAM)
        bios = pmemsave(os.path.join(work, "truth-bios.bin"), (1 << 32) - BIOS, BIOS)
        images = [("raw", raw)]
        for fmt in FORMATS:
            set_format(fmt)
            restart_libvirtd()
            path = os.path.join(work, f"libvirt-{fmt}.img")
            log(f"virsh save ({fmt}, paused domain)")
            virsh("save", DOMAIN, path)
            virsh("restore", path, "--paused")
            again = pmemsave(os.path.join(work, f"check-{fmt}.bin"), 0, RAM)
            diff = [
                o
                for o in range(0, RAM, 4096)
                if again[o : o + 4096] != truth[o : o + 4096] and not any(lo <= o < hi for lo, hi in X86_EXCLUDE)
            ]
            if diff:
                raise RuntimeError(f"{fmt}: restored RAM differs in {len(diff)} pages")
            images.append((fmt, path))
        virsh("destroy", DOMAIN, check=False)
        images.append(("zstd", build_zstd_image(raw, os.path.join(work, "libvirt-zstd.img"))))
    finally:
        with open(QEMU_CONF, "w") as f:
            f.write(original_conf)
        virsh("destroy", DOMAIN, check=False)

    data = bytearray(truth)
    for lo, hi in X86_EXCLUDE:
        data[lo:hi] = bytes(hi - lo)
    with open(os.path.join(work, "truth-ram.bin"), "wb") as f:
        f.write(data)
    zstd(os.path.join(work, "truth-ram.bin"), os.path.join(a.out, "libvirt.ram.zst"))
    shared_bios = subprocess.run(
        ["zstd", "-dc", os.path.join(a.out, "x86.pc.bios.zst")], capture_output=True, check=True
    ).stdout
    truths = [
        {
            "file": "libvirt.ram.zst",
            "block": "pc.ram",
            "block_offset": 0,
            "length": RAM,
            "gpa": 0,
            "exclude": X86_EXCLUDE,
            "source": "destination-load-pmemsave",
        }
    ]
    if bios == shared_bios:
        truths.append(
            {
                "file": "x86.pc.bios.zst",
                "block": "pc.bios",
                "block_offset": 0,
                "length": BIOS,
                "gpa": (1 << 32) - BIOS,
                "exclude": [],
                "source": "destination-load-pmemsave",
            }
        )
    for fmt, path in images:
        if fmt == "raw":
            committed = "libvirt-raw.img.zst"
            zstd(path, os.path.join(a.out, committed))
        else:
            committed = f"libvirt-{fmt}.img"
            shutil.copyfile(path, os.path.join(a.out, committed))
        entries.append(
            {
                "name": f"libvirt-{fmt}",
                "kind": "libvirt-save",
                "stream": committed,
                "stream_size": os.path.getsize(path),
                "header": header_fields(path),
                "save_image_format": fmt,
                "made_by": "built from libvirt-raw" if fmt == "zstd" else "virsh save (libvirt 9.0.0)",
                "domain": {"name": DOMAIN, "uuid": UUID, "memory_kib": RAM >> 10},
                "machine": "pc",
                "arch": "x86_64",
                "versions": version.strip().splitlines(),
                "ram_block": "pc.ram",
                "truth": truths,
                "notes": (
                    "built by build_zstd_image() from libvirt-raw: libvirt 9.0.0 has no zstd "
                    "save format; header and stream are libvirt-raw's, format 5, stream "
                    "compressed with zstd -c as qemu_saveimage.c does"
                    if fmt == "zstd"
                    else "virsh save of the running domain (was_running 1); truth = pmemsave after "
                    "virsh restore --paused of this image"
                    if fmt == "raw"
                    else f'save_image_format = "{fmt}" in qemu.conf; virsh save of the paused domain '
                    "restored from libvirt-raw (was_running 0); virsh restore --paused of this "
                    "image gives the same pc.ram as the truth"
                ),
            }
        )
    path = os.path.join(a.out, "samples.json")
    names = {e["name"] for e in entries}
    listed = [s for s in json.load(open(path)) if s["name"] not in names] if os.path.exists(path) else []
    with open(path, "w") as f:
        json.dump(listed + entries, f, indent=1)
        f.write("\n")
    log("updated", path)


if __name__ == "__main__":
    main()
