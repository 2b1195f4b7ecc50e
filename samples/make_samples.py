#!/usr/bin/env python3
"""Capture real QEMU live-migration streams plus ground truth: every sample family.

Usage:  python samples/make_samples.py FAMILY [--only NAME[,NAME...]] [--out-dir DIR]
                                              [--no-verify] [--keep-raw DIR] [--qemu10 ROOT]

Families (one function each, ``capture_<family>``):
  basic          x86 (i440fx, q35; stopped, running, XBZRLE, compress, postcopy,
                 x-ignore-shared on 7.2 and 10) and the other architectures (aarch64,
                 ppc64, s390x) with RAM preloaded from a generated image
  multifd        multifd (7.2 and 10), mapped-ram and QEMU 10 main-stream samples
  block          block migration (block + zero-blocks) and dirty-bitmaps
  xbzrle-deltas  designed XBZRLE deltas driven through qtest (and cache aging)
  libvirt        real `virsh save` images, one per save_image_format (root, libvirtd)

They share one pipeline: start a source QEMU (TCG, tests/support/qemu.py's Vm), bring
the guest to the sample's state (test guest running or stopped, or RAM preloaded and
never run), set capabilities and parameters, migrate to a file (exec:cat, file: or a
unix socket whose connections are saved), take the truth with pmemsave from the
stopped source, optionally (verify, the default) load the capture into a paused
destination of the same QEMU and compare (where they differ the destination's memory
is the truth: what QEMU itself loads from these bytes), write <name>.mig.zst and the
truth files (zstd -19) into --out-dir, and update --out-dir/samples.json.

Only the first bytes of each stream are checked here ("QEVM", version 3); the stream
is not decoded (that is migstream's job).  QEMU 10 is the one samples/get_qemu10.sh
unpacks (--qemu10, default $QEMU10_ROOT or /var/tmp/qemu10).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from support.qemu import PAGE  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import QEMU_X86  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import X86_EXCLUDE  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import MiB  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import Vm  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import build_guest  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import differing_pages  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import guest_args  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import image_ram_args  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import qemu10_root  # noqa: E402  (tests/ is put on sys.path just above)
from support.qemu import qemu10_wrapper  # noqa: E402  (tests/ is put on sys.path just above)
from support.qtest import QTest  # noqa: E402  (tests/ is put on sys.path just above)

RUNNING_PARAMS = {"max-bandwidth": 32 * MiB, "downtime-limit": 30}
MULTIFD_MAGIC = 0x11223344
#: The firmware ROM is byte-identical in the x86 samples: stored once (QEMU 10's too).
BIOS_FILE = "x86.pc.bios.zst"
QUERY_MIGRATE_KEYS = (
    "status",
    "total-time",
    "downtime",
    "setup-time",
    "expected-downtime",
    "ram",
    "xbzrle-cache",
    "compression",
)


def log(*a):
    print("[make_samples]", *a, flush=True)


# ---------------------------------------------------------------------------
# the shared pipeline


def zstd(src, dst):
    subprocess.run(["zstd", "-q", "-f", "-19", "-o", dst, src], check=True)


def unzstd(path) -> bytes:
    return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def start_vm(binary, args, workdir, tag) -> Vm:
    q = Vm(binary, args, workdir, tag)
    log("  $", " ".join(q.cmdline))
    return q


def wait_ready(q, mode):
    """Running/stopped samples: let the test guest boot and run ~2 s, then stop it if asked."""
    if mode not in ("running", "stopped"):
        return
    t0 = time.time()
    q.wait_serial("migstream guest ready", timeout=60)
    log(f"  guest ready after {time.time() - t0:.1f}s")
    time.sleep(2.0)
    if mode == "stopped":
        q.cmd("stop")


def set_migration(q, caps, params):
    q.caps(*caps)
    if params:
        q.cmd("migrate-set-parameters", **params)


def ramblocks(q):
    """Parse HMP `info ramblock` into [{name, page_size, offset, used, max}]."""
    out = []
    for line in q.hmp("info ramblock").splitlines():
        # "Block Name  PSize  Offset  Used  Total"; the name has no spaces
        parts = line.split()
        # QEMU 10 appends HVA and RO columns.
        if len(parts) >= 6 and parts[3].startswith("0x") and parts[5].startswith("0x"):
            out.append(
                {
                    "name": parts[0],
                    "page_size": parts[1] + " " + parts[2],
                    "offset": int(parts[3], 16),
                    "used": int(parts[4], 16),
                    "max": int(parts[5], 16),
                }
            )
    return out


def check_header(path):
    """Sanity check of the first bytes only: "QEVM", be32 version 3, and (if
    present) the CONFIGURATION byte 0x07 + be32 length + machine type name.
    Returns the machine type name or None."""
    with open(path, "rb") as f:
        head = f.read(8 + 5 + 256)
    magic, ver = struct.unpack(">4sI", head[:8])
    if magic != b"QEVM" or ver != 3:
        raise RuntimeError(f"bad stream header {head[:8]!r}")
    if head[8] == 0x07:
        (n,) = struct.unpack(">I", head[9:13])
        return head[13 : 13 + n].decode("ascii", "replace")
    return None


def wait_migration(q, s, server=None, timeout=120):
    """Poll query-migrate until completed; start postcopy when the sample says so,
    answer a postcopy source's return path (``server``) and relax the downtime limit
    of a running guest that does not converge.  Returns (final stats, notes)."""
    t0 = time.time()
    notes = []
    post_started = False
    relaxed = False
    zero_since = None
    while True:
        st = q.cmd("query-migrate")
        status = st.get("status")
        if status == "completed":
            return st, notes
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"migration {status}: {st}")
        el = time.time() - t0
        if (
            s.get("postcopy_after") is not None
            and not post_started
            and el >= s["postcopy_after"]
            and status == "active"
        ):
            log("  migrate-start-postcopy")
            q.cmd("migrate-start-postcopy")
            post_started = True
        if status == "active" and st.get("ram", {}).get("remaining") == 0:
            zero_since = zero_since or time.time()
        else:
            zero_since = None
        stuck = zero_since is not None and time.time() - zero_since > 3
        if server is not None and (status == "postcopy-active" or stuck) and not server.shut:
            if stuck:
                notes.append("precopy finished before postcopy started; SHUT sent to let the source complete")
            # The destination would answer SHUT at the very end; nothing on the
            # source depends on its timing, so send it once postcopy runs.
            time.sleep(0.5)
            server.send_shut()
            log("  sent MIG_RP_MSG_SHUT on the return path")
        if el > 40 and not relaxed and s.get("mode") == "running" and status == "active":
            # did not converge: allow a longer downtime so it finishes
            q.cmd("migrate-set-parameters", **{"downtime-limit": 2000})
            notes.append("did not converge in 40 s; downtime-limit raised to 2000 ms")
            log("  not converging; raising downtime-limit")
            relaxed = True
        if el > timeout:
            raise RuntimeError(f"migration timeout: {st}")
        time.sleep(0.05)


def x86_truth_specs(blocks, main="pc.ram", base=0, exclude=X86_EXCLUDE):
    """(block, guest-physical address, length, exclude) of the main RAM block and, where
    there is one, pc.bios (mapped just below 4 GiB)."""
    ram = next((b for b in blocks if b["name"] == main), None)
    if ram is None:
        raise RuntimeError(f"main RAM block {main} not found in {blocks}")
    specs = [(main, base, ram["used"], exclude)]
    bios = next((b for b in blocks if b["name"] == "pc.bios"), None)
    if bios is not None:
        specs.append(("pc.bios", (1 << 32) - bios["used"], bios["used"], ()))
    return specs


def take_truth(q, workdir, stem, specs, main="pc.ram"):
    """pmemsave each (block, gpa, length, exclude) of ``specs``; returns the samples.json
    truth entries and [(entry, raw dump file)]."""
    truths, truths_raw = [], []
    for blk, gpa, length, ex in specs:
        rawf = os.path.join(workdir, f"{stem}.{blk}.bin")
        q.pmemsave(gpa, length, rawf)
        t = {
            "file": f"{stem}.ram.zst" if blk == main else f"{stem}.{blk}.zst",
            "block": blk,
            "block_offset": 0,
            "length": length,
            "gpa": gpa,
            "exclude": [list(r) for r in ex],
            "source": "source-pmemsave",
        }
        truths.append(t)
        truths_raw.append((t, rawf))
    return truths, truths_raw


def loaded_truth_diffs(q, workdir, tag, truths_raw):
    """Wait until the destination ``q`` has loaded its incoming stream, pmemsave each
    truth region there and return [(truth, dump path, differing page offsets)]."""
    t0 = time.time()
    while True:
        st = q.cmd("query-migrate").get("status")
        rs = q.status()
        if st == "completed" or (st is None and rs in ("paused", "prelaunch", "postmigrate") and time.time() - t0 > 1):
            break
        if st == "failed":
            raise RuntimeError(f"destination load failed: {q.stderr()}")
        if time.time() - t0 > 60:
            raise RuntimeError("destination load timeout")
        time.sleep(0.1)
    res = []
    for t, raw in truths_raw:
        dst = os.path.join(workdir, f"{tag}-dst-{t['block']}.bin")
        loaded = q.pmemsave(t["gpa"], t["length"], dst)
        res.append((t, dst, differing_pages(read(raw), loaded, t["exclude"])))
    return res


def verify(s, binary, args, workdir, truths_raw, main, channels=()):
    """Load a capture into a paused destination (``args`` with -S -incoming defer)
    and compare its memory with the truth dumps; see loaded_truth_diffs()."""
    q = start_vm(binary, args, workdir, f"{s['name']}-dst")
    conns = []
    try:
        multifd_params = {k: v for k, v in s.get("params", {}).items() if k.startswith("multifd")}
        set_migration(q, s["caps"], multifd_params)
        if "compress" in s["caps"]:
            q.cmd("migrate-set-parameters", **{"decompress-threads": 2})
        if s.get("transport") == "multi":
            sock = os.path.join(workdir, f"{s['name']}-dst.sock")
            q.cmd("migrate-incoming", uri=f"unix:{sock}")
            conns, _threads = replay(sock, [main, *channels])
        elif s.get("transport") == "file":
            q.cmd("migrate-incoming", uri=f"file:{main}")
        else:
            q.cmd("migrate-incoming", uri=f"exec:cat {main}")
        return loaded_truth_diffs(q, workdir, s["name"], truths_raw)
    finally:
        q.close()
        for c in conns:
            c.close()


def adopt_verified(results, truths_raw, notes, who, strict=False):
    """Record what the destination loaded: equal memory is a note; a difference makes
    the destination's dump the truth (what QEMU loads from these bytes), listed in
    source_differs_pages, or fails with ``strict``."""
    for t, dst, diffs in results:
        if not diffs:
            log(f"  verify {t['block']}: destination == source")
            notes.append(
                f"{t['block']}: a paused {who} destination loading this capture has identical "
                f"memory (outside excludes)."
            )
            continue
        if strict:
            raise RuntimeError(f"destination differs from the source in {len(diffs)} pages of {t['block']}")
        log(f"  verify {t['block']}: {len(diffs)} pages differ -> truth from destination")
        rawf = next(r for tt, r in truths_raw if tt is t)
        shutil.copyfile(dst, rawf)
        t["source"] = "destination-load-pmemsave"
        t["source_differs_pages"] = diffs
        notes.append(
            f"{t['block']}: the stopped source's pmemsave differed from what a {who} destination "
            f"loads from this capture in {len(diffs)} pages (the guest's latest changes are not in "
            f"the stream), so this truth is the destination's pmemsave after loading it; the "
            f"differing block offsets are in source_differs_pages."
        )


def store_truth(out, truths_raw):
    """Write each truth dump (excluded bytes stored as zeros) as its .zst file; pc.bios
    goes into the shared firmware file when it equals it (or there is none yet)."""
    for t, rawf in truths_raw:
        data = bytearray(read(rawf))
        for lo, hi in t["exclude"]:
            data[lo:hi] = bytes(hi - lo)
        with open(rawf, "wb") as f:
            f.write(data)
        if t["file"] == "x86-image.ram.zst":
            p = os.path.join(out, t["file"])
            if os.path.exists(p) and unzstd(p) != bytes(data):
                raise RuntimeError("pc.ram of an image-backed VM differs from x86-image.ram.zst")
        shared = os.path.join(out, BIOS_FILE)
        if t["block"] == "pc.bios" and (not os.path.exists(shared) or unzstd(shared) == bytes(data)):
            t["file"] = BIOS_FILE
            if os.path.exists(shared):
                continue  # equal to the stored firmware
        zstd(rawf, os.path.join(out, t["file"]))


def stream_entry(name, raw_stream, q, workdir, final, notes, **fields):
    """A samples.json entry for one capture: the common fields, then ``fields``."""
    entry = {
        "name": name,
        "stream": f"{name}.mig.zst",
        "stream_size": os.path.getsize(raw_stream),
        "machine": "pc",
        "machine_type_in_stream": check_header(raw_stream),
        "arch": "x86_64",
    }
    entry.update(fields)
    entry["query_migrate"] = {k: final.get(k) for k in QUERY_MIGRATE_KEYS if k in final}
    entry["qemu_cmdline"] = " ".join(q.cmdline).replace(workdir + "/", "")
    entry["notes"] = " ".join(notes)
    return entry


def update_manifest(out, entries):
    """Replace (in place) or append ``entries`` in out/samples.json."""
    path = os.path.join(out, "samples.json")
    manifest = json.load(open(path)) if os.path.exists(path) else []
    new = {e["name"]: e for e in entries}
    manifest = [new.pop(m["name"], m) for m in manifest] + list(new.values())
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


class CaptureServer(threading.Thread):
    """Unix-socket migration target that only records the bytes it receives.
    send_shut() writes MIG_RP_MSG_SHUT (type 1, len 4, value 0) on the return
    path, which lets a postcopy source's return-path thread end cleanly."""

    def __init__(self, path, out):
        super().__init__(daemon=True)
        self.path, self.out = path, out
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.conn = None
        self.shut = False
        self.done = threading.Event()

    def run(self):
        self.conn, _ = self.srv.accept()
        with open(self.out, "wb") as f:
            while True:
                d = self.conn.recv(1 << 20)
                if not d:
                    break
                f.write(d)
        self.done.set()

    def send_shut(self):
        self.conn.sendall(struct.pack(">HHI", 1, 4, 0))
        self.shut = True

    def close(self):
        for s in (self.conn, self.srv):
            try:
                if s:
                    s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# family "basic": one VM per sample, x86 and the other architectures

QEMU_BIN = {
    "x86_64": QEMU_X86,
    "aarch64": "qemu-system-aarch64",
    "ppc64": "qemu-system-ppc64",
    "s390x": "qemu-system-s390x",
}


BASIC_SAMPLES = [
    dict(
        name="x86-fresh-S",
        arch="x86_64",
        machine="pc",
        mode="paused",
        caps=[],
        params={},
        notes="i440fx started with -S and never run: pc.ram is all zero, "
        "firmware only in the ROM blocks (pc.bios, pc.rom).",
    ),
    dict(
        name="x86-stopped",
        arch="x86_64",
        machine="pc",
        mode="stopped",
        caps=[],
        params={},
        notes="i440fx, test guest ran ~2 s after printing 'ready', then QMP stop, "
        "then migrate (single pass, no dirtying).",
    ),
    dict(
        name="x86-running",
        arch="x86_64",
        machine="pc",
        mode="running",
        caps=[],
        params=dict(RUNNING_PARAMS),
        notes="i440fx, test guest dirtying pages during migration.",
    ),
    dict(
        name="x86-xbzrle",
        arch="x86_64",
        machine="pc",
        mode="running",
        caps=["xbzrle"],
        params=dict(RUNNING_PARAMS, **{"xbzrle-cache-size": 8 * MiB}),
        notes="i440fx, guest dirtying, XBZRLE on.",
    ),
    dict(
        name="x86-compress",
        arch="x86_64",
        machine="pc",
        mode="running",
        caps=["compress"],
        params=dict(RUNNING_PARAMS, **{"compress-threads": 2}),
        notes="i440fx, guest dirtying, legacy multi-thread zlib compression "
        "(COMPRESS_PAGE records). Loading needs 'compress' on the destination.",
    ),
    dict(
        name="x86-postcopy",
        arch="x86_64",
        machine="pc",
        mode="running",
        caps=["postcopy-ram"],
        params={"max-bandwidth": 8 * MiB, "downtime-limit": 30},
        postcopy_after=0.5,
        transport="unix",
        notes="i440fx, guest dirtying, postcopy-ram on, migrate-start-postcopy "
        "about 1 s after migrate. Captured over a unix socket (return path "
        "needed); the capture server answers nothing but a "
        "MIG_RP_MSG_SHUT(0) once postcopy is active, so the source can complete. "
        "With exec:cat QEMU 7.2 accepts postcopy but then stays in "
        "postcopy-active forever (its return-path thread never gets SHUT/EOF).",
    ),
    dict(
        name="x86-q35",
        arch="x86_64",
        machine="q35",
        mode="running",
        caps=[],
        params=dict(RUNNING_PARAMS),
        notes="q35 (ICH9), test guest dirtying pages during migration.",
    ),
    dict(
        name="x86-ignore-shared",
        arch="x86_64",
        machine="pc",
        mode="stopped",
        caps=["x-ignore-shared"],
        params={},
        shared_ram=True,
        notes="i440fx whose pc.ram is a shared memory-backend-file (share=on), capability "
        "x-ignore-shared on both sides: MEM_SIZE carries each block's guest address and "
        "pc.ram's pages are not in the stream (a destination maps the same file). The "
        "truth covers pc.bios only; pc.ram's content lives in the shared file, not here.",
    ),
    dict(
        name="x86-qemu10-ignore-shared",
        arch="x86_64",
        machine="pc",
        mode="stopped",
        caps=["x-ignore-shared"],
        params={},
        shared_ram=True,
        qemu="10",
        notes="As x86-ignore-shared, with QEMU 10.0.2 (Debian bookworm-backports, unpacked into "
        "a private folder, $QEMU10_ROOT, default /var/tmp/qemu10; see README): its "
        "VMDESCRIPTION describes the configuration section (8.2+) and it sends "
        "SWITCHOVER_START. Made for the devices and x-ignore-shared tests.",
    ),
    dict(
        name="aarch64-virt",
        arch="aarch64",
        machine="virt",
        mode="image",
        caps=[],
        params={},
        ram_base=0x40000000,
        ram_size=64 * MiB,
        ram_id="mach-virt.ram",
        extra=["-cpu", "max"],
        notes="aarch64 virt -cpu max, paused (-S), RAM preloaded from a generated "
        "image via memory-backend-file (share=off); no firmware/kernel.",
    ),
    dict(
        name="ppc64-pseries",
        arch="ppc64",
        machine="pseries",
        mode="image",
        caps=[],
        params={},
        ram_base=0,
        ram_size=256 * MiB,
        ram_id="ppc_spapr.ram",
        extra=[],
        notes="ppc64 pseries, paused (-S), RAM preloaded from a generated image "
        "via memory-backend-file (share=off). QEMU copies SLOF into RAM at 0, "
        "so the first ~1 MiB is firmware, not the image.",
    ),
    dict(
        name="s390x-ccw",
        arch="s390x",
        machine="s390-ccw-virtio",
        mode="image",
        caps=[],
        params={},
        ram_base=0,
        ram_size=64 * MiB,
        ram_id="s390.ram",
        extra=[],
        notes="s390x s390-ccw-virtio, paused (-S), RAM preloaded from a generated "
        "image via memory-backend-file (share=off). QEMU loads the s390-ccw "
        "firmware near the top of RAM (0x3e00000).",
    ),
]


def make_ram_image(path, size, seed=1234):
    """Varied page content for image-backed (paused) VMs, same scheme as guest.asm:
    first 1 MiB zero; 1..12 MiB by page kind; the rest zero."""
    rnd = random.Random(seed)
    text = (b"######## migstream ASCII text page: quick brown fox").ljust(63, b".") + b"\n"
    buf = bytearray(size)
    for i in range(2816):
        off = MiB + i * 4096
        if off + 4096 > size:
            break
        k = i % 8
        if 7 * 256 <= i < 9 * 256:
            k = 0
        if k in (0, 5):
            continue
        if k == 1:
            page = b"\x55" * 4096
        elif k == 2:
            page = b"\xff" * 4096
        elif k == 6:
            page = bytes([i & 0xFF]) * 4096
        elif k in (3, 7):
            page = bytearray(text * 64)
            page[0:8] = b"%08X" % i
        else:
            if i % 128 == 4:
                page = rnd.randbytes(4096)
            else:
                page = bytearray(4096)
                o = (i * 8) & 0xFFC
                page[o : o + 4] = struct.pack("<I", i)
        buf[off : off + 4096] = page
    with open(path, "wb") as f:
        f.write(buf)


def basic_args(s, workdir, guest_img, incoming=False):
    args = ["-M", s["machine"]]
    if s["arch"] == "x86_64":
        args = guest_args(guest_img, 32, s["machine"])
        if s.get("shared_ram"):
            # Source and destination map the same file: what x-ignore-shared is for.
            args += image_ram_args(os.path.join(workdir, s["name"] + ".shared"), 32 * MiB, share=True)
    else:
        img = os.path.join(workdir, f"{s['name']}.img")
        args += [
            "-m",
            f"{s['ram_size'] // MiB}M",
            "-machine",
            f"memory-backend={s['ram_id']}",
            "-object",
            f"memory-backend-file,id={s['ram_id']},size={s['ram_size']},mem-path={img},share=off",
        ]
        args += s.get("extra", [])
    if incoming:
        args += ["-S", "-incoming", "defer"]
    elif s["mode"] in ("paused", "image"):
        args += ["-S"]
    return args


def capture_basic_one(s, ctx):
    name, workdir, out = s["name"], ctx.workdir, ctx.out
    log(f"=== {name}")
    binary = ctx.binaries["10"] if s.get("qemu") == "10" else QEMU_BIN[s["arch"]]
    if shutil.which(binary) is None:
        raise RuntimeError(f"{binary} not installed")
    if s["mode"] == "image":
        make_ram_image(os.path.join(workdir, f"{name}.img"), s["ram_size"])
    raw_stream = os.path.join(workdir, f"{name}.mig")
    q = start_vm(binary, basic_args(s, workdir, ctx.guest_img), workdir, name)
    server = None
    try:
        qemu_version = q.version()
        wait_ready(q, s["mode"])
        blocks = ramblocks(q)
        set_migration(q, s["caps"], s["params"])
        if s.get("transport") == "unix":
            sockpath = os.path.join(workdir, f"{name}.mig.sock")
            if os.path.exists(sockpath):
                os.unlink(sockpath)
            server = CaptureServer(sockpath, raw_stream)
            server.start()
            uri = f"unix:{sockpath}"
        else:
            uri = f"exec:cat > {raw_stream}"
        log(f"  migrate {uri}  caps={s['caps']} params={s['params']}")
        q.cmd("migrate", uri=uri)
        st, notes = wait_migration(q, s, server)
        if server is not None:
            server.done.wait(10)
        status_after = q.status()
        ticks = q.serial_text().count("migstream guest tick")
        ram = st.get("ram", {})
        log(
            f"  completed: dirty-sync-count={ram.get('dirty-sync-count')} "
            f"transferred={ram.get('transferred')} total-time={st.get('total-time')}ms "
            f"downtime={st.get('downtime')}ms vm={status_after}"
        )
        main = s.get("ram_id", "pc.ram")
        specs = x86_truth_specs(blocks, main, s.get("ram_base", 0), X86_EXCLUDE if s["arch"] == "x86_64" else ())
        size = specs[0][2]
        if s.get("shared_ram"):
            specs = specs[1:]  # a shared block is not in an x-ignore-shared stream: no truth for it
        truths, truths_raw = take_truth(q, workdir, name, specs, main)
        final = q.cmd("query-migrate")
    finally:
        q.close()
        if server is not None:
            server.close()

    machine_type = check_header(raw_stream)
    log(f"  stream header ok, configuration machine type {machine_type!r}")
    stream_bytes = read(raw_stream)
    for b in blocks:
        nb = b["name"].encode()
        if bytes([len(nb)]) + nb not in stream_bytes:
            notes.append(f"block name {b['name']} not found in stream")
    if s["mode"] == "image":
        img = read(os.path.join(workdir, f"{name}.img"))
        dump = read(truths_raw[0][1])
        if dump != img:
            d = differing_pages(img, dump)
            what = ""
            if dump[d[0] : d[0] + 4] == b"\xd0\x0d\xfe\xed":
                what = f" (QEMU wrote a flattened device tree, magic d00dfeed, at {d[0]:#x})"
            notes.append(
                f"pmemsave differs from the generated RAM image in {len(d)} pages, "
                f"block offsets {[hex(o) for o in d[:16]]}{what}."
            )
        else:
            notes.append("pmemsave equals the generated RAM image")
    if ctx.verify:
        dst_args = basic_args(s, workdir, ctx.guest_img, incoming=True)
        results = verify(s, binary, dst_args, workdir, truths_raw, raw_stream)
        adopt_verified(results, truths_raw, notes, f"QEMU {qemu_version.split()[0]} (same binary)")
    zstd(raw_stream, os.path.join(out, f"{name}.mig.zst"))
    store_truth(out, truths_raw)

    params = dict(s["params"])
    if any("downtime-limit raised" in n for n in notes):
        params["downtime-limit (raised during migration)"] = 2000
    entry = stream_entry(
        name,
        raw_stream,
        q,
        workdir,
        final,
        [s["notes"], *notes],
        machine=s["machine"],
        machine_type_in_stream=machine_type,
        arch=s["arch"],
        qemu_version=qemu_version,
        capabilities=s["caps"],
        parameters=params,
        transport=uri.replace(raw_stream, "FILE"),
        ram_block=main,
        ram_size=size,
        ram_blocks=blocks,
        truth=truths,
    )
    entry["guest_ticks_printed"] = ticks if s["arch"] == "x86_64" else None
    entry["notes"] = entry.pop("notes")
    return [entry]


def capture_basic(ctx, names):
    for s in BASIC_SAMPLES:
        if s["name"] in names:
            ctx.run(s["name"], capture_basic_one, s, ctx)


# ---------------------------------------------------------------------------
# family "multifd": multifd, mapped-ram and QEMU 10, several captures per VM possible
#
# Transports:
#   * "exec"  exec:cat > FILE (plain stream)
#   * "file"  file:FILE (QEMU 8.2+; needed by mapped-ram)
#   * "multi" a unix socket served by MultiCapture: every accepted connection is saved
#             to its own file; files are then named by what their first bytes say
#             ("QEVM" -> main stream, MULTIFD_MAGIC 0x11223344 -> channel <id byte>).
# Verify replays the channel files over a unix socket (replay()), main connection
# first, all connections fed in parallel.


def multifd(comp, channels=2):
    return {"multifd-channels": channels, "multifd-compression": comp}


# mode "running": the test guest dirties pages during migration.
# mode "image": pc.ram is preloaded from make_ram_image() (the guest's page-kind
# scheme) and the VM never runs (-S), so every such VM, on QEMU 7.2 or 10, has the
# same pc.ram: one truth file (x86-image.ram.zst) serves them all, which keeps
# samples/ small.  (Migrating one stopped VM several times is refused: "Can't migrate
# the vm that was paused due to previous migration".)
def multifd_over_socket(qemu, comp):
    """A multifd sample over a socket, 2 channels: without compression the guest is
    dirtying pages (several sync rounds), with zlib or zstd it is stopped."""
    name = f"{'x86' if qemu == '7.2' else 'q10'}-multifd-{'nocomp' if comp == 'none' else comp}"
    version = "QEMU 7.2" if qemu == "7.2" else "QEMU 10.0"
    if comp != "none":
        mode, params, what = "image", multifd(comp), f"{comp}, stopped guest."
    else:
        mode, params = "running", dict(RUNNING_PARAMS, **multifd("none"))
        what = "no compression, guest dirtying"
        what += (
            " (several sync rounds)."
            if qemu == "7.2"
            else ("; zero pages listed in packets (zero-page-detection multifd, the default).")
        )
    notes = f"{version} multifd, 2 channels, {what}"
    return dict(name=name, qemu=qemu, mode=mode, caps=["multifd"], params=params, transport="multi", notes=notes)


MULTIFD_SAMPLES = [
    # --- QEMU 10, main stream only
    dict(
        name="q10-running",
        qemu="10",
        mode="running",
        caps=[],
        params=dict(RUNNING_PARAMS),
        transport="exec",
        notes="QEMU 10.0 i440fx, guest dirtying pages during migration (several "
        "iterations, SWITCHOVER_START before the RAM END section); default "
        "zero-page-detection (multifd; without the multifd capability the main "
        "thread detects zero pages as before).",
    ),
    dict(
        name="q10-zpd-none",
        qemu="10",
        mode="image",
        caps=[],
        params={"zero-page-detection": "none"},
        transport="exec",
        notes="QEMU 10.0, stopped guest, zero-page-detection none: zero pages are sent as full PAGE records.",
    ),
    # --- multifd over a socket, 2 channels
    *(multifd_over_socket(qemu, comp) for qemu in ("7.2", "10") for comp in ("none", "zlib", "zstd")),
    dict(
        name="q10-multifd-zpd-legacy",
        qemu="10",
        mode="image",
        caps=["multifd"],
        params=dict(multifd("none"), **{"zero-page-detection": "legacy"}),
        transport="multi",
        notes="QEMU 10.0 multifd, 2 channels, stopped guest, zero-page-detection legacy: "
        "zero pages as ZERO records on the main channel.",
    ),
    # --- mapped-ram (file: URI)
    dict(
        name="q10-mapped-ram",
        qemu="10",
        mode="image",
        caps=["mapped-ram"],
        params={},
        transport="file",
        notes="QEMU 10.0 mapped-ram to a file: URI, stopped guest (as libvirt saves).",
    ),
    dict(
        name="q10-mapped-ram-multifd",
        qemu="10",
        mode="image",
        caps=["mapped-ram", "multifd"],
        params=multifd("none"),
        transport="file",
        notes="QEMU 10.0 mapped-ram + multifd (2 channels write pages in place with pwritev), stopped guest.",
    ),
]

#: What every migration starts from (capabilities not in the sample are switched off too).
DEFAULT_PARAMS = {
    "7.2": {"multifd-compression": "none"},
    "10": {"multifd-compression": "none", "zero-page-detection": "multifd"},
}


class MultiCapture(threading.Thread):
    """Unix-socket migration target: saves every accepted connection to its own file
    (conn0, conn1, ... in accept order) until stopped."""

    def __init__(self, path, prefix):
        super().__init__(daemon=True)
        self.path, self.prefix = path, prefix
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(16)
        self.files = []
        self.threads = []
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            out = f"{self.prefix}.conn{len(self.files)}"
            self.files.append(out)
            t = threading.Thread(target=self._save, args=(conn, out), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _save(conn, out):
        with conn, open(out, "wb") as f:
            while True:
                d = conn.recv(1 << 20)
                if not d:
                    break
                f.write(d)

    def finish(self, timeout=20):
        for t in self.threads:
            t.join(timeout)
        self.stopping = True
        try:
            self.srv.close()
        except OSError:
            pass


def name_channels(files):
    """{'main': file, 0: file, 1: file} from the first bytes of each connection."""
    named = {}
    for fn in files:
        with open(fn, "rb") as f:
            head = f.read(64)
        if head[:4] == b"QEVM":
            named["main"] = fn
        elif len(head) >= 25 and struct.unpack(">I", head[:4])[0] == MULTIFD_MAGIC:
            named[head[24]] = fn
        else:
            raise RuntimeError(f"connection {fn} starts with {head[:8].hex()}")
    return named


def replay(sock, files):
    """Connect to a listening destination once per file (main first) and send them
    all in parallel: the destination's main thread waits for the channels' SYNC
    packets, so a serial replay could deadlock on full socket buffers."""
    conns = []
    for _ in files:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.time() + 10
        while True:
            try:
                c.connect(sock)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        conns.append(c)
        time.sleep(0.2)  # keep the accept order: main, then channel 0, 1, ...

    def send(c, fn):
        with open(fn, "rb") as f:
            while True:
                d = f.read(1 << 20)
                if not d:
                    break
                c.sendall(d)
        c.shutdown(socket.SHUT_WR)

    ts = [threading.Thread(target=send, args=(c, fn), daemon=True) for c, fn in zip(conns, files)]
    for t in ts:
        t.start()
    return conns, ts


IMAGE_SIZE = 32 * MiB


def x86_args(s, guest_img, incoming=False):
    args = guest_args(guest_img, 32)
    if s["mode"] == "image":
        img = os.path.join(os.path.dirname(guest_img), "ram.img")
        if not os.path.exists(img):
            make_ram_image(img, IMAGE_SIZE)
        args += image_ram_args(img, IMAGE_SIZE)
        if not incoming:
            args += ["-S"]
    if incoming:
        args += ["-S", "-incoming", "defer"]
    return args


def migrate_once(q, s, workdir, all_caps, qemu):
    """One migration of the (already prepared) source VM; returns (uri, main file,
    channel files, final query-migrate, notes)."""
    name = s["name"]
    raw_main = os.path.join(workdir, f"{name}.mig")
    q.caps(*(c for c in all_caps if c not in s["caps"]), state=False)
    q.cmd("migrate-set-parameters", **DEFAULT_PARAMS[qemu])
    set_migration(q, s["caps"], s["params"])
    server = None
    if s["transport"] == "multi":
        sock = os.path.join(workdir, f"{name}.sock")
        server = MultiCapture(sock, os.path.join(workdir, name))
        server.start()
        uri = f"unix:{sock}"
    elif s["transport"] == "file":
        uri = f"file:{raw_main}"
    else:
        uri = f"exec:cat > {raw_main}"
    log(f"  {name}: migrate {uri} caps={s['caps']} params={s['params']}")
    try:
        q.cmd("migrate", uri=uri)
        final, notes = wait_migration(q, s)
    finally:
        if server is not None:
            server.finish()
    ram = final.get("ram", {})
    log(
        f"  completed: dirty-sync-count={ram.get('dirty-sync-count')} "
        f"transferred={ram.get('transferred')} multifd-bytes={ram.get('multifd-bytes')}"
    )
    channels = []
    if server is not None:
        named = name_channels(server.files)
        order = [
            "main" if named.get("main") == f else f"channel {next(k for k, v in named.items() if v == f)}"
            for f in server.files
        ]
        notes.append(f"connections accepted in this order: {', '.join(order)}.")
        os.replace(named.pop("main"), raw_main)
        for cid in sorted(named):
            dst = os.path.join(workdir, f"{name}.ch{cid}")
            os.replace(named[cid], dst)
            channels.append(dst)
    return uri.replace(raw_main, "FILE").replace(workdir + "/", ""), raw_main, channels, final, notes


def capture_group(group, ctx):
    """Migrate one VM once per sample of the group; returns the samples.json entries."""
    out, workdir, guest_img = ctx.out, ctx.workdir, ctx.guest_img
    first = group[0]
    stem = "x86-image" if first["mode"] == "image" else first["name"]
    log(f"=== {stem}: {[s['name'] for s in group]}")
    qemu = first["qemu"]
    binary = ctx.binaries[qemu]
    all_caps = sorted({c for s in group for c in s["caps"]})
    q = start_vm(binary, x86_args(first, guest_img), workdir, stem)
    runs = []
    try:
        qemu_version = q.version()
        wait_ready(q, first["mode"])
        blocks = ramblocks(q)
        truths = truths_raw = None
        for s in group:
            runs.append((s, *migrate_once(q, s, workdir, all_caps, qemu)))
            if truths is None:
                truths, truths_raw = take_truth(q, workdir, stem, x86_truth_specs(blocks))
    finally:
        q.close()

    shared_notes = []
    if ctx.verify:
        for s, _uri, raw_main, channels, _final, notes in runs:
            dst_args = x86_args(s, guest_img, incoming=True)
            results = verify(s, binary, dst_args, workdir, truths_raw, raw_main, channels)
            adopt_verified(results, truths_raw, notes, f"QEMU {qemu}", strict=len(group) > 1)
    store_truth(out, truths_raw)
    if first["mode"] == "image":
        img = read(os.path.join(workdir, "ram.img"))
        same = differing_pages(img, read(truths_raw[0][1]), X86_EXCLUDE) == []
        shared_notes.append(
            "pc.ram preloaded from make_ram_image(32 MiB) via "
            "memory-backend-file (share=off), VM never run (-S); "
            + ("pmemsave equals the image outside the excluded window." if same else "pmemsave DIFFERS from the image.")
        )

    entries = []
    main = next(b for b in blocks if b["name"] == "pc.ram")
    for s, uri, raw_main, channels, final, notes in runs:
        zstd(raw_main, os.path.join(out, f"{s['name']}.mig.zst"))
        chan_entries = []
        for i, ch in enumerate(channels):
            fn = f"{s['name']}.ch{i}.zst"
            zstd(ch, os.path.join(out, fn))
            chan_entries.append({"file": fn, "size": os.path.getsize(ch)})
        entries.append(
            stream_entry(
                s["name"],
                raw_main,
                q,
                workdir,
                final,
                [s["notes"], *notes, *shared_notes],
                channels=chan_entries,
                mapped_ram="mapped-ram" in s["caps"],
                machine="pc",
                machine_type_in_stream=check_header(raw_main),
                arch="x86_64",
                qemu_version=qemu_version,
                capabilities=s["caps"],
                parameters=s["params"],
                transport=uri,
                ram_block="pc.ram",
                ram_size=main["used"],
                ram_blocks=blocks,
                truth=truths,
            )
        )
    return entries


def capture_multifd(ctx, names):
    for s in MULTIFD_SAMPLES:
        if s["name"] in names:
            ctx.run(s["name"], capture_group, [s], ctx)


# ---------------------------------------------------------------------------
# family "block": block migration (block + zero-blocks) and dirty-bitmaps, QEMU 7.2
#
# Both VMs are stopped from the start (-S: RAM holds only the firmware, which keeps the
# samples small) and have a 3 MiB raw disk with a known content (text, zeros, text
# and random bytes) as a virtio-blk drive "d1", beside the guest's boot disk.  Truth:
# pmemsave of pc.ram and pc.bios, and for x86-block the disk image itself (what the
# destination's disk holds after the load).

BLOCK_SAMPLES = [
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


def capture_block_one(s, ctx):
    name, workdir, out = s["name"], ctx.workdir, ctx.out
    log(f"=== {name}")
    disk = os.path.join(workdir, f"{name}.disk.raw")
    disk_data = make_disk(disk)
    args = [
        *guest_args(ctx.guest_img, 32),
        "-drive",
        f"file={disk},format=raw,if=none,id=d1,node-name=n1",
        "-device",
        "virtio-blk-pci,drive=d1",
        "-S",
    ]
    raw = os.path.join(workdir, f"{name}.mig")
    q = start_vm(QEMU_X86, args, workdir, name)
    try:
        if s.get("bitmap"):
            q.cmd("block-dirty-bitmap-add", **s["bitmap"])
        set_migration(q, s["caps"], s["params"])
        blocks = ramblocks(q)
        q.cmd("migrate", uri=f"exec:cat > {raw}")
        final, notes = wait_migration(q, s)
        truths, truths_raw = take_truth(q, workdir, name, x86_truth_specs(blocks))
        qemu_version = q.version()
    finally:
        q.close()
    store_truth(out, truths_raw)
    zstd(raw, os.path.join(out, f"{name}.mig.zst"))
    entry = stream_entry(
        name,
        raw,
        q,
        workdir,
        final,
        [s["notes"], *notes],
        qemu_version=qemu_version,
        capabilities=s["caps"],
        parameters=s["params"],
        transport="exec:cat > FILE",
        ram_block="pc.ram",
        ram_size=32 * MiB,
        ram_blocks=blocks,
        truth=truths,
    )
    if "block" in s["caps"]:
        with open(os.path.join(workdir, f"{name}.disk.bin"), "wb") as f:
            f.write(disk_data)
        zstd(os.path.join(workdir, f"{name}.disk.bin"), os.path.join(out, f"{name}.disk.zst"))
        entry["disks"] = [
            {
                "device": "d1",
                "file": f"{name}.disk.zst",
                "length": len(disk_data),
                "source": "the source's disk image (raw)",
            }
        ]
    log(f"{name}: {entry['stream_size']} bytes")
    return [entry]


def capture_block(ctx, names):
    for s in BLOCK_SAMPLES:
        if s["name"] in names:
            ctx.run(s["name"], capture_block_one, s, ctx)


# ---------------------------------------------------------------------------
# family "xbzrle-deltas": x86-xbzrle-deltas and x86-xbzrle-aging, QEMU 7.2
#
# The x86-xbzrle capture only holds small deltas (a running guest increments
# dwords).  To hold the encoder to QEMU's on every kind of delta, this family
# drives guest memory itself, through QEMU's qtest protocol (`-qtest`, which
# works alongside TCG; the VM stays paused with -S, so nothing but us writes RAM):
#
#   1. 48 test pages at 2 MiB (set A: even pages, set B: odd) get base content;
#   2. migrate with xbzrle, xbzrle-cache-size 64 MiB (bigger than all RAM blocks'
#      ram_addr span, so the direct-mapped cache never has collisions),
#      max-bandwidth 256 KiB/s, downtime-limit 1 ms (so any dirty page keeps the
#      migration iterating);
#   3. every time query-migrate's dirty-sync-count goes up, mutate one set (A, B,
#      A, ...).  QEMU is then sending the other set, so each sent page carries
#      exactly one designed delta relative to its previous send: single dwords,
#      scattered bytes, runs split by single equal bytes, runs and gaps longer
#      than 127 (two-byte lengths), one-run deltas whose encoding lands on each
#      side of the 4096-byte limit (with and without unchanged bytes after them),
#      zeroed pages, full rewrites (overflow) and rewrites with equal content;
#   4. stop mutating; the next sync finds nothing dirty and QEMU completes;
#   5. pmemsave pc.ram (and pc.bios) as truth, optionally load the stream into a
#      paused destination and compare, write the sample and its samples.json entry.

TEST_BASE = 2 * MiB
TEST_PAGES = 48

# Which of the two alternately mutated sets test page k (0-based) belongs to.
SET_RULES = {"k % 2": lambda k: k % 2, "(k + k // 16) % 2": lambda k: (k + k // 16) % 2}

XBZRLE_CONFIGS = {
    # Every delta kind; a cache bigger than all RAM: no collisions.
    "x86-xbzrle-deltas": dict(
        rounds=14,  # mutations, alternating sets: each page gets ~7 deltas
        params={"xbzrle-cache-size": 64 * MiB, "max-bandwidth": 256 * 1024, "downtime-limit": 1},
        mutate=1.0,
        same=True,
        ballast=0,
        sets="k % 2",
    ),
    # page_cache.c's collisions and aging: 16 slots, so test pages k, k+16, k+32
    # share a slot; the sets are chosen so that k and k+16 are in different sets
    # (their sends are an odd number of syncs apart) and k and k+32 in the same
    # one (an even number apart): an off-by-one lifetime would show.  Each page is
    # dirtied in only ~60 % of its set's rounds, so slot owners go stale and get
    # replaced.  Every dirtied page really changes (no
    # invisible "unchanged" sends), and 16 ballast pages rewritten every round keep
    # each round long enough (rate limit) for the next mutation to land first.
    "x86-xbzrle-aging": dict(
        rounds=16,
        params={"xbzrle-cache-size": 64 * 1024, "max-bandwidth": 256 * 1024, "downtime-limit": 1},
        mutate=0.6,
        same=False,
        ballast=16,
        sets="(k + k // 16) % 2",
    ),
}


def mutations(rnd, same_allowed=True):
    """(name, function(old bytes) -> new bytes) for every designed delta."""

    def flip(page, lo, hi):
        # XOR with a short non-zero key: every byte changes, and the sample
        # still compresses (random XOR bytes would not)
        key = [rnd.randrange(1, 256) for _ in range(rnd.choice([1, 3, 7]))]
        p = bytearray(page)
        for i in range(lo, hi):
            p[i] ^= key[i % len(key)]
        return bytes(p)

    def dword(page):
        p = bytearray(page)
        at = rnd.randrange(0, PAGE, 4)
        p[at : at + 4] = ((int.from_bytes(p[at : at + 4], "little") + 1) & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(p)

    def scattered(page):
        p = bytearray(page)
        for at in rnd.sample(range(PAGE), rnd.choice([2, 9, 40, 200, 600])):
            p[at] ^= rnd.randrange(1, 256)
        return bytes(p)

    def comb(page):
        # changed bytes separated by single unchanged bytes: no run may swallow them
        lo = rnd.randrange(0, PAGE - 400)
        p = bytearray(page)
        for i in range(lo, lo + rnd.choice([9, 63, 255]) * 2, 2):
            p[i] ^= rnd.randrange(1, 256)
        return bytes(p)

    def long_runs(page):
        p = page
        for _ in range(rnd.choice([1, 2, 3])):
            lo = rnd.randrange(130, PAGE - 1200)
            p = flip(p, lo, lo + rnd.choice([128, 129, 300, 1000]))
        return p

    def border(page):
        # one run from offset z (1 length byte) of n bytes: delta = 1 + 2 + n bytes;
        # t = PAGE - z - n unchanged bytes follow it (QEMU needs 2 more spare bytes then)
        z, n = rnd.choice([(1, 4091), (1, 4092), (1, 4093), (3, 4093), (2, 4094), (5, 4090), (4, 4091)])
        return flip(page, z, z + n)

    def rewrite(page):
        # every byte changes: one 4096-byte run, always an overflow
        return flip(page, 0, PAGE)

    def zero(page):
        return bytes(PAGE)

    def same(page):
        return page

    return [
        ("dword", dword),
        ("scattered", scattered),
        ("comb", comb),
        ("long-runs", long_runs),
        ("border", border),
        ("border", border),
        ("rewrite", rewrite),
        ("zero", zero),
    ] + ([("same", same)] if same_allowed else [])


def base_page(rnd, k):
    if k % 8 == 0:
        return rnd.randbytes(PAGE)
    line = f"page {k:04d} of the migstream xbzrle delta sample ".encode()
    return (line * (PAGE // len(line) + 1))[:PAGE]


def drive_deltas(q, qt, cfg, rnd, pages, used):
    """Mutate one set of test pages at every new dirty sync until ``cfg["rounds"]``
    rounds are done and the migration completes; returns the final query-migrate."""
    total_pages = TEST_PAGES + cfg["ballast"]
    set_of = SET_RULES[cfg["sets"]]
    muts = mutations(rnd, cfg["same"])
    rewrite = dict(muts)["rewrite"]
    last_sync = None
    done_rounds = 0
    t0 = time.time()
    while True:
        st = q.cmd("query-migrate")
        status = st.get("status")
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"migration {status}: {st}")
        if time.time() - t0 > 120:
            raise RuntimeError(f"migration timeout: {st}")
        sync = st.get("ram", {}).get("dirty-sync-count")
        if sync is not None and sync != last_sync and done_rounds < cfg["rounds"]:
            # A new round started: mutate the set QEMU is not sending now.
            last_sync = sync
            for k in range(total_pages):
                if set_of(k) != done_rounds % 2:
                    continue
                if k >= TEST_PAGES:
                    name, fn = "ballast", rewrite
                elif cfg["mutate"] < 1.0 and rnd.random() >= cfg["mutate"]:
                    continue
                else:
                    name, fn = rnd.choice(muts)
                pages[k] = fn(pages[k])
                used[name] = used.get(name, 0) + 1
                qt.write(TEST_BASE + k * PAGE, pages[k])
            done_rounds += 1
        time.sleep(0.005)
    ram = st.get("ram", {})
    log(
        f"  completed after {done_rounds} mutation rounds: dirty-sync-count="
        f"{ram.get('dirty-sync-count')} xbzrle={st.get('xbzrle-cache')}"
    )
    if done_rounds < cfg["rounds"]:
        raise RuntimeError(f"migration completed after only {done_rounds} mutation rounds")
    return st


def capture_xbzrle_one(name, ctx):
    cfg, workdir, out = XBZRLE_CONFIGS[name], ctx.workdir, ctx.out
    log(f"=== {name}")
    total_pages = TEST_PAGES + cfg["ballast"]
    rnd = random.Random(20261125)
    qt_sock = os.path.join(workdir, f"{name}.qtest.sock")
    raw_stream = os.path.join(workdir, f"{name}.mig")
    machine = ["-M", "pc", "-m", "32M"]
    args = ["-S", *machine, "-qtest", f"unix:{qt_sock},server=on,wait=off", "-qtest-log", "/dev/null"]
    q = start_vm(QEMU_X86, args, workdir, name)
    qt = None
    used = {}
    pages = {}
    try:
        qemu_version = q.version()
        qt = QTest(qt_sock)
        for k in range(total_pages):
            pages[k] = base_page(rnd, k)
            qt.write(TEST_BASE + k * PAGE, pages[k])
        blocks = ramblocks(q)
        set_migration(q, ["xbzrle"], cfg["params"])
        q.cmd("migrate", uri=f"exec:cat > {raw_stream}")
        drive_deltas(q, qt, cfg, rnd, pages, used)
        truths, truths_raw = take_truth(q, workdir, name, x86_truth_specs(blocks))
        final = q.cmd("query-migrate")
    finally:
        if qt is not None:
            qt.close()
        q.close()

    notes = [f"mutations applied: {json.dumps(used, sort_keys=True)}."]
    ram_dump = read(truths_raw[0][1])
    for k in range(total_pages):
        if ram_dump[TEST_BASE + k * PAGE : TEST_BASE + (k + 1) * PAGE] != pages[k]:
            raise RuntimeError(f"test page {k} differs from what was written")
    if ctx.verify:
        s = {"name": name, "caps": ["xbzrle"]}
        results = verify(s, QEMU_X86, [*machine, "-S", "-incoming", "defer"], workdir, truths_raw, raw_stream)
        adopt_verified(results, truths_raw, notes, "QEMU 7.2", strict=True)
    zstd(raw_stream, os.path.join(out, f"{name}.mig.zst"))
    store_truth(out, truths_raw)
    entry = stream_entry(
        name,
        raw_stream,
        q,
        workdir,
        final,
        [
            "i440fx paused (-S), RAM written only through the qtest protocol: "
            f"{total_pages} pages at {TEST_BASE:#x} mutated with designed XBZRLE deltas, "
            "two sets of pages (test_pages.sets) mutated alternately, one set per dirty sync "
            f"(see make_samples.py, family xbzrle-deltas, config {json.dumps(cfg, sort_keys=True)}).",
            *notes,
        ],
        qemu_version=qemu_version,
        capabilities=["xbzrle"],
        parameters=cfg["params"],
        transport="exec:cat > FILE",
        ram_block="pc.ram",
        ram_size=truths[0]["length"],
        ram_blocks=blocks,
        truth=truths,
    )
    entry["guest_ticks_printed"] = None
    entry["test_pages"] = {"gpa": TEST_BASE, "count": total_pages, "sets": cfg["sets"]}
    entry["notes"] = entry.pop("notes")
    return [entry]


def capture_xbzrle_deltas(ctx, names):
    for name in XBZRLE_CONFIGS:
        if name in names:
            ctx.run(name, capture_xbzrle_one, name, ctx)


# ---------------------------------------------------------------------------
# family "libvirt": real `virsh save` images (libvirt 9.0.0 + QEMU 7.2, Debian 12)
#
# As root, libvirtd started by hand (see samples/README.md):
#   1. builds the test guest, creates a transient TCG domain (type='qemu', pc machine,
#      64 MiB, serial to a file) and waits for "migstream guest ready";
#   2. `virsh save` of the running domain with qemu.conf's default format (raw):
#      was_running = 1;
#   3. `virsh restore --paused` of that image and `pmemsave` of pc.ram and pc.bios
#      through `virsh qemu-monitor-command`: the truth is what real QEMU loads from
#      the image (a destination load, like the other families' verify);
#   4. for every compressed format (gzip, bzip2, xz, lzop, zstd): rewrites
#      save_image_format in /etc/libvirt/qemu.conf, restarts libvirtd (the pid in
#      /run/libvirtd.pid, i.e. the daemon started by hand), `virsh save` of the
#      still-paused restored domain (was_running = 0), `virsh restore --paused` of
#      the new image, and checks that its pmemsave equals the truth;
#   5. writes libvirt-raw.img.zst (the raw image, zstd -19), libvirt-<fmt>.img
#      (compressed images as libvirt wrote them: their QEMU stream is already
#      compressed), libvirt.ram.zst (pc.ram truth) and entries in samples.json
#      ("kind": "libvirt-save"; "stream" is the image file).
# The guest never runs after step 2, so every image carries the same RAM.

QEMU_CONF = "/etc/libvirt/qemu.conf"
DOMAIN = "migstream-lvd"
UUID = "6d6967a5-7472-4561-8d00-6c7664000001"
LIBVIRT_RAM = 64 << 20
LIBVIRT_BIOS = 256 << 10
# What libvirt 9.0.0 accepts as save_image_format (zstd, format 5, came later).
FORMATS = ["gzip", "bzip2", "xz", "lzop"]


def virsh(*args, check=True):
    r = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def domain_xml(work, img, serial):
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <uuid>{UUID}</uuid>
  <memory unit='KiB'>{LIBVIRT_RAM >> 10}</memory>
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


def header_fields(path):
    with open(path, "rb") as f:
        head = f.read(92)
    version, data_len, was_running, fmt, cookie = struct.unpack_from("<5I", head, 16)
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


def libvirt_pmemsave(path, addr, size):
    virsh(
        "qemu-monitor-command",
        DOMAIN,
        json.dumps({"execute": "pmemsave", "arguments": {"val": addr, "size": size, "filename": path}}),
    )
    for _ in range(50):
        if os.path.exists(path) and os.path.getsize(path) == size:
            return read(path)
        time.sleep(0.1)
    raise RuntimeError(f"pmemsave {path} incomplete")


def libvirt_notes(fmt):
    if fmt == "zstd":
        return (
            "built by build_zstd_image() from libvirt-raw: libvirt 9.0.0 has no zstd "
            "save format; header and stream are libvirt-raw's, format 5, stream "
            "compressed with zstd -c as qemu_saveimage.c does"
        )
    if fmt == "raw":
        return (
            "virsh save of the running domain (was_running 1); truth = pmemsave after "
            "virsh restore --paused of this image"
        )
    return (
        f'save_image_format = "{fmt}" in qemu.conf; virsh save of the paused domain '
        "restored from libvirt-raw (was_running 0); virsh restore --paused of this "
        "image gives the same pc.ram as the truth"
    )


def save_images(work, xml, serial):
    """virsh save in every format (see above); returns (truth RAM, truth BIOS, virsh
    version, [(format, image path)])."""
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
    truth = libvirt_pmemsave(os.path.join(work, "truth-ram.bin"), 0, LIBVIRT_RAM)
    bios = libvirt_pmemsave(os.path.join(work, "truth-bios.bin"), (1 << 32) - LIBVIRT_BIOS, LIBVIRT_BIOS)
    images = [("raw", raw)]
    for fmt in FORMATS:
        set_format(fmt)
        restart_libvirtd()
        path = os.path.join(work, f"libvirt-{fmt}.img")
        log(f"virsh save ({fmt}, paused domain)")
        virsh("save", DOMAIN, path)
        virsh("restore", path, "--paused")
        again = libvirt_pmemsave(os.path.join(work, f"check-{fmt}.bin"), 0, LIBVIRT_RAM)
        diff = differing_pages(again, truth, X86_EXCLUDE)
        if diff:
            raise RuntimeError(f"{fmt}: restored RAM differs in {len(diff)} pages")
        images.append((fmt, path))
    virsh("destroy", DOMAIN, check=False)
    images.append(("zstd", build_zstd_image(raw, os.path.join(work, "libvirt-zstd.img"))))
    return truth, bios, version, images


def capture_libvirt_images(ctx):
    work, out = ctx.workdir, ctx.out
    img = build_guest(work)
    serial = os.path.join(work, "serial.log")
    xml = os.path.join(work, "domain.xml")
    with open(xml, "w") as f:
        f.write(domain_xml(work, img, serial))
    original_conf = open(QEMU_CONF).read()
    try:
        truth, bios, version, images = save_images(work, xml, serial)
    finally:
        with open(QEMU_CONF, "w") as f:
            f.write(original_conf)
        virsh("destroy", DOMAIN, check=False)

    with open(os.path.join(work, "truth-ram.bin"), "wb") as f:
        f.write(truth)
    ram_truth = {"file": "libvirt.ram.zst", "block": "pc.ram", "block_offset": 0, "length": LIBVIRT_RAM, "gpa": 0}
    ram_truth.update(exclude=[list(r) for r in X86_EXCLUDE], source="destination-load-pmemsave")
    store_truth(out, [(ram_truth, os.path.join(work, "truth-ram.bin"))])
    truths = [ram_truth]
    if bios == unzstd(os.path.join(out, BIOS_FILE)):  # listed only when it is the shared x86 firmware
        bios_gpa = (1 << 32) - LIBVIRT_BIOS
        truths.append(dict(ram_truth, file=BIOS_FILE, block="pc.bios", length=LIBVIRT_BIOS, gpa=bios_gpa, exclude=[]))
    entries = []
    for fmt, path in images:
        if fmt == "raw":
            committed = "libvirt-raw.img.zst"
            zstd(path, os.path.join(out, committed))
        else:
            committed = f"libvirt-{fmt}.img"
            shutil.copyfile(path, os.path.join(out, committed))
        entries.append(
            {
                "name": f"libvirt-{fmt}",
                "kind": "libvirt-save",
                "stream": committed,
                "stream_size": os.path.getsize(path),
                "header": header_fields(path),
                "save_image_format": fmt,
                "made_by": "built from libvirt-raw" if fmt == "zstd" else "virsh save (libvirt 9.0.0)",
                "domain": {"name": DOMAIN, "uuid": UUID, "memory_kib": LIBVIRT_RAM >> 10},
                "machine": "pc",
                "arch": "x86_64",
                "versions": version.strip().splitlines(),
                "ram_block": "pc.ram",
                "truth": truths,
                "notes": libvirt_notes(fmt),
            }
        )
    return entries


def capture_libvirt(ctx, names):
    ctx.run("libvirt", capture_libvirt_images, ctx)


# ---------------------------------------------------------------------------
# the command line

FAMILIES = {
    "basic": (capture_basic, [s["name"] for s in BASIC_SAMPLES]),
    "multifd": (capture_multifd, [s["name"] for s in MULTIFD_SAMPLES]),
    "block": (capture_block, [s["name"] for s in BLOCK_SAMPLES]),
    "xbzrle-deltas": (capture_xbzrle_deltas, list(XBZRLE_CONFIGS)),
    "libvirt": (capture_libvirt, [f"libvirt-{f}" for f in ("raw", *FORMATS, "zstd")]),
}


class Context:
    """What every family's capture needs: where to write, where to work, which QEMU
    binaries, whether to verify; run() captures one sample (or group) and records
    its samples.json entries, or its failure while the others go on."""

    def __init__(self, out, workdir, guest_img, binaries, verify):
        self.out, self.workdir, self.guest_img = out, workdir, guest_img
        self.binaries, self.verify = binaries, verify
        self.failed = []

    def run(self, label, capture, *args):
        try:
            entries = capture(*args)
        except Exception as ex:  # keep going with the other samples
            log(f"  FAILED {label}: {ex!r}")
            self.failed.append((label, repr(ex)))
            return
        update_manifest(self.out, entries)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("family", choices=sorted(FAMILIES), help="which sample family to capture")
    ap.add_argument("--only", help="comma-separated sample names (default: the whole family)")
    ap.add_argument("--out-dir", "--out", dest="out", default=HERE, help="where samples and samples.json go")
    ap.add_argument("--no-verify", action="store_true", help="do not load the captures into a destination")
    ap.add_argument("--keep-raw", help="work (and keep the raw files) in this directory")
    ap.add_argument("--qemu10", default=str(qemu10_root()), help="root unpacked by get_qemu10.sh")
    a = ap.parse_args(argv)
    capture, known = FAMILIES[a.family]
    names = a.only.split(",") if a.only else known
    unknown = set(names) - set(known)
    if unknown:
        sys.exit(f"unknown sample(s) in family {a.family}: {sorted(unknown)}")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    workdir = os.path.abspath(a.keep_raw or tempfile.mkdtemp(prefix=f"migsamples-{a.family}-"))
    os.makedirs(workdir, exist_ok=True)
    try:
        binaries = {"7.2": QEMU_X86, "10": qemu10_wrapper(a.qemu10, workdir)}
        guest_img = str(build_guest(workdir)) if a.family != "libvirt" else None
        ctx = Context(out, workdir, guest_img, binaries, not a.no_verify)
        capture(ctx, names)
    finally:
        if not a.keep_raw:
            shutil.rmtree(workdir, ignore_errors=True)
    for n, err in ctx.failed:
        log(f"failed: {n}: {err}")
    sys.exit(1 if ctx.failed else 0)


if __name__ == "__main__":
    main()
