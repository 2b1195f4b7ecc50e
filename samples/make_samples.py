#!/usr/bin/env python3
"""Capture real QEMU live-migration streams plus ground truth.

Usage:  python samples/make_samples.py [--only NAME[,NAME...]] [--out samples/]
                                       [--no-verify] [--keep-raw DIR]

For every sample this script
  1. starts a source QEMU (TCG) with a QMP unix socket,
  2. lets the guest run / stops it / keeps it paused as the sample requires,
  3. sets migration capabilities and parameters, runs `migrate`
     (uri "exec:cat > FILE", or a unix socket saved by a tiny Python server
     for postcopy, which needs a return path),
  4. waits for `completed`, records the final `query-migrate` stats,
  5. dumps ground truth from the stopped source with `pmemsave`,
  6. (verify) loads the stream into a paused destination QEMU
     (`-incoming defer`, `migrate-incoming exec:cat FILE`) and checks that the
     destination's pmemsave equals the source's outside the exclude ranges,
  7. writes <name>.mig.zst, <name>.ram.zst (zstd -19) and updates samples.json.

Only the first bytes of each stream are checked here ("QEVM", version 3); the
stream is not decoded (that is migstream's job).
QMP is done with the `qemu.qmp` package (legacy sync API).
"""

import argparse
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from qemu.qmp.legacy import QEMUMonitorProtocol

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST_ASM = os.path.join(HERE, "guest", "guest.asm")
MiB = 1 << 20

X86_EXCLUDE = [[0xA0000, 0x100000]]  # VGA window / BIOS ROM alias (block offsets)


def log(*a):
    print("[make_samples]", *a, flush=True)


# ---------------------------------------------------------------------------
# sample definitions

RUNNING_PARAMS = {"max-bandwidth": 32 * MiB, "downtime-limit": 30}

SAMPLES = [
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
        qemu_root="QEMU10_ROOT",
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

QEMU_BIN = {
    "x86_64": "qemu-system-x86_64",
    "aarch64": "qemu-system-aarch64",
    "ppc64": "qemu-system-ppc64",
    "s390x": "qemu-system-s390x",
}


def qemu_root(s):
    """The unpacked root of another QEMU build (samples with "qemu_root"), or None."""
    if not s.get("qemu_root"):
        return None
    return os.environ.get(s["qemu_root"], "/var/tmp/qemu10")


def qemu_binary(s):
    root = qemu_root(s)
    if root is None:
        return QEMU_BIN[s["arch"]]
    # Its modules and firmware come from the same root, not from the installed 7.2.
    os.environ["QEMU_MODULE_DIR"] = os.path.join(root, "usr/lib/x86_64-linux-gnu/qemu")
    return os.path.join(root, "usr/bin", QEMU_BIN[s["arch"]])


# ---------------------------------------------------------------------------
# helpers


def build_guest(workdir):
    """nasm the boot sector + stage 2, pad to 1 MiB (SeaBIOS on q35 needs it)."""
    img = os.path.join(workdir, "guest.img")
    subprocess.run(["nasm", "-f", "bin", "-o", img, GUEST_ASM], check=True)
    with open(img, "r+b") as f:
        f.truncate(MiB)
    return img


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


def zstd(src, dst):
    subprocess.run(["zstd", "-q", "-f", "-19", "-o", dst, src], check=True)


class Qemu:
    """A QEMU process with a QMP socket; always killed on close()."""

    def __init__(self, binary, args, workdir, tag):
        self.sock = os.path.join(workdir, f"{tag}.qmp")
        self.serial = os.path.join(workdir, f"{tag}.serial")
        self.errlog = os.path.join(workdir, f"{tag}.stderr")
        cmd = [
            binary,
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-serial",
            f"file:{self.serial}",
            "-qmp",
            f"unix:{self.sock},server=on,wait=off",
        ] + args
        self.cmdline = cmd
        log("  $", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.errlog, "wb"))
        self.qmp = None
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited: {open(self.errlog).read()}")
            if os.path.exists(self.sock):
                try:
                    q = QEMUMonitorProtocol(self.sock)
                    q.connect()
                    self.qmp = q
                    break
                except OSError:
                    pass
            if time.time() > deadline:
                raise RuntimeError("QMP socket did not come up")
            time.sleep(0.1)

    def cmd(self, name, **args):
        r = self.qmp.cmd_raw(name, args or None)
        if "error" in r:
            raise RuntimeError(f"QMP {name} {args}: {r['error']}")
        return r.get("return")

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def serial_text(self):
        try:
            return open(self.serial, "rb").read().decode("latin-1")
        except FileNotFoundError:
            return ""

    def close(self):
        if self.qmp is not None:
            try:
                self.qmp.cmd_raw("quit")
            except Exception:
                pass
            try:
                self.qmp.close()
            except Exception:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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
        self.nbytes = 0
        self.done = threading.Event()

    def run(self):
        self.conn, _ = self.srv.accept()
        with open(self.out, "wb") as f:
            while True:
                d = self.conn.recv(1 << 20)
                if not d:
                    break
                f.write(d)
                self.nbytes += len(d)
        self.done.set()

    def send_shut(self):
        self.conn.sendall(struct.pack(">HHI", 1, 4, 0))

    def close(self):
        for s in (self.conn, self.srv):
            try:
                if s:
                    s.close()
            except OSError:
                pass


def ramblocks(q):
    """Parse HMP `info ramblock` into [{name, used, max, offset}]."""
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


def qemu_args(s, workdir, guest_img, incoming=False):
    args = ["-M", s["machine"]]
    if qemu_root(s):
        args += ["-L", os.path.join(qemu_root(s), "usr/share/qemu")]
    if s["arch"] == "x86_64":
        args += ["-m", "32M", "-drive", f"file={guest_img},format=raw,if=ide,snapshot=on"]
        if s.get("shared_ram"):
            # Source and destination map the same file: what x-ignore-shared is for.
            args += [
                "-machine",
                "memory-backend=pc.ram",
                "-object",
                f"memory-backend-file,id=pc.ram,size=32M,"
                f"mem-path={os.path.join(workdir, s['name'] + '.shared')},share=on",
            ]
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


def wait_migration(q, s, server=None, timeout=120):
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
        if server is not None and (status == "postcopy-active" or stuck) and not getattr(server, "shut", False):
            if stuck:
                notes.append("precopy finished before postcopy started; SHUT sent to let the source complete")
            # The destination would answer SHUT at the very end; nothing on the
            # source depends on its timing, so send it once postcopy runs.
            time.sleep(0.5)
            server.send_shut()
            server.shut = True
            log("  sent MIG_RP_MSG_SHUT on the return path")
        if el > 40 and not relaxed and s["mode"] == "running" and status == "active":
            # did not converge: allow a longer downtime so it finishes
            q.cmd("migrate-set-parameters", **{"downtime-limit": 2000})
            notes.append("did not converge in 40 s; downtime-limit raised to 2000 ms")
            log("  not converging; raising downtime-limit")
            relaxed = True
        if el > timeout:
            raise RuntimeError(f"migration timeout: {st}")
        time.sleep(0.05)


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


def diff_pages(a_path, b_path, length, exclude):
    """Block offsets of 4 KiB pages that differ (outside exclude ranges)."""
    a = open(a_path, "rb").read()
    b = open(b_path, "rb").read()
    if len(a) != length or len(b) != length:
        raise RuntimeError(f"pmemsave length mismatch {len(a)} {len(b)} != {length}")
    return [
        off
        for off in range(0, length, 4096)
        if not any(lo <= off < hi for lo, hi in exclude) and a[off : off + 4096] != b[off : off + 4096]
    ]


def loaded_truth_diffs(q, s, workdir, truths_raw, done_states):
    """Wait until the destination ``q`` has loaded its incoming stream, pmemsave each
    truth region there and return (truth, dump path, differing page offsets)."""
    t0 = time.time()
    while True:
        st = q.cmd("query-migrate").get("status")
        rs = q.cmd("query-status")["status"]
        if st == "completed" or (st is None and rs in done_states and time.time() - t0 > 1):
            break
        if st == "failed":
            raise RuntimeError(f"destination load failed: {open(q.errlog).read()}")
        if time.time() - t0 > 60:
            raise RuntimeError("destination load timeout")
        time.sleep(0.1)
    res = []
    for t, raw in truths_raw:
        dst = os.path.join(workdir, f"{s['name']}-dst-{t['block']}.bin")
        q.cmd("pmemsave", val=t["gpa"], size=t["length"], filename=dst)
        res.append((t, dst, diff_pages(raw, dst, t["length"], t["exclude"])))
    return res


def verify(s, workdir, guest_img, stream, truths_raw, caps):
    """Load the stream into a paused destination and compare pmemsave dumps."""
    binary = qemu_binary(s)
    q = Qemu(binary, qemu_args(s, workdir, guest_img, incoming=True), workdir, f"{s['name']}-dst")
    try:
        if caps:
            q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in caps])
        if "compress" in caps:
            q.cmd("migrate-set-parameters", **{"decompress-threads": 2})
        q.cmd("migrate-incoming", uri=f"exec:cat {stream}")
        return loaded_truth_diffs(q, s, workdir, truths_raw, ("paused", "prelaunch", "postmigrate"))
    finally:
        q.close()


# ---------------------------------------------------------------------------


def capture(s, out, workdir, guest_img, do_verify):
    name = s["name"]
    log(f"=== {name}")
    binary = qemu_binary(s)
    if shutil.which(binary) is None:
        raise RuntimeError(f"{binary} not installed")
    if s["mode"] == "image":
        make_ram_image(os.path.join(workdir, f"{name}.img"), s["ram_size"])
    raw_stream = os.path.join(workdir, f"{name}.mig")
    q = Qemu(binary, qemu_args(s, workdir, guest_img), workdir, name)
    server = None
    try:
        ver = q.cmd("query-version")
        qv = ver["qemu"]
        qemu_version = f"{qv['major']}.{qv['minor']}.{qv['micro']}" + (
            f" ({ver['package'].strip()})" if ver.get("package") else ""
        )
        if s["mode"] in ("running", "stopped"):
            t0 = time.time()
            while "migstream guest ready" not in q.serial_text():
                if time.time() - t0 > 60:
                    raise RuntimeError("guest did not print 'ready'")
                time.sleep(0.1)
            log(f"  guest ready after {time.time() - t0:.1f}s")
            time.sleep(2.0)
            if s["mode"] == "stopped":
                q.cmd("stop")
        blocks = ramblocks(q)
        if s["caps"]:
            q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in s["caps"]])
        if s["params"]:
            q.cmd("migrate-set-parameters", **s["params"])
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
        status_after = q.cmd("query-status")["status"]
        ticks = q.serial_text().count("migstream guest tick")
        ram = st.get("ram", {})
        log(
            f"  completed: dirty-sync-count={ram.get('dirty-sync-count')} "
            f"transferred={ram.get('transferred')} total-time={st.get('total-time')}ms "
            f"downtime={st.get('downtime')}ms vm={status_after}"
        )

        # ground truth from the stopped source
        truths, truths_raw = [], []
        main = next((b for b in blocks if b["name"] in ("pc.ram", s.get("ram_id"))), None)
        if main is None:
            raise RuntimeError(f"main RAM block not found in {blocks}")
        base = s.get("ram_base", 0)
        size = main["used"]
        excl = X86_EXCLUDE if s["arch"] == "x86_64" else []
        # A shared block is not in an x-ignore-shared stream: no truth for it.
        specs = [] if s.get("shared_ram") else [(main["name"], base, size, excl)]
        bios = next((b for b in blocks if b["name"] == "pc.bios"), None)
        if bios is not None:
            specs.append(("pc.bios", (1 << 32) - bios["used"], bios["used"], []))
        for blk, gpa, length, ex in specs:
            rawf = os.path.join(workdir, f"{name}.{blk}.bin")
            q.cmd("pmemsave", val=gpa, size=length, filename=rawf)
            t = {
                "file": f"{name}.ram.zst" if blk == main["name"] else f"{name}.{blk}.zst",
                "block": blk,
                "block_offset": 0,
                "length": length,
                "gpa": gpa,
                "exclude": ex,
            }
            truths.append(t)
            truths_raw.append((t, rawf))
        final = q.cmd("query-migrate")
    finally:
        q.close()
        if server is not None:
            server.close()

    machine_type = check_header(raw_stream)
    log(f"  stream header ok, configuration machine type {machine_type!r}")
    stream_bytes = open(raw_stream, "rb").read()
    for b in blocks:
        nb = b["name"].encode()
        if bytes([len(nb)]) + nb not in stream_bytes:
            notes.append(f"block name {b['name']} not found in stream")
    if s["mode"] == "image":
        img = open(os.path.join(workdir, f"{name}.img"), "rb").read()
        dump = open(truths_raw[0][1], "rb").read()
        if dump != img:
            d = [o for o in range(0, len(img), 4096) if img[o : o + 4096] != dump[o : o + 4096]]
            what = ""
            if dump[d[0] : d[0] + 4] == b"\xd0\x0d\xfe\xed":
                what = f" (QEMU wrote a flattened device tree, magic d00dfeed, at {d[0]:#x})"
            notes.append(
                f"pmemsave differs from the generated RAM image in {len(d)} pages, "
                f"block offsets {[hex(o) for o in d[:16]]}{what}."
            )
        else:
            notes.append("pmemsave equals the generated RAM image")

    for t in truths:
        t["source"] = "source-pmemsave"
    if do_verify:
        for t, dst, diffs in verify(s, workdir, guest_img, raw_stream, truths_raw, s["caps"]):
            if not diffs:
                log(f"  verify {t['block']}: destination == source")
                notes.append(
                    f"{t['block']}: a paused destination (same QEMU binary) loading this "
                    f"stream has identical memory (outside excludes)."
                )
                continue
            log(f"  verify {t['block']}: {len(diffs)} pages differ -> truth from destination")
            # The stream (as QEMU itself loads it) is the reference for a decoder:
            # use the destination dump as truth and document the source difference.
            rawf = [r for tt, r in truths_raw if tt is t][0]
            shutil.copyfile(dst, rawf)
            t["source"] = "destination-load-pmemsave"
            t["source_differs_pages"] = diffs
            notes.append(
                f"{t['block']}: the stopped source's pmemsave differed from what a QEMU 7.2 "
                f"destination loads from this stream in {len(diffs)} pages (the guest's "
                f"latest small increments / page rewrites are missing from the stream), so "
                f"this truth is the destination's pmemsave after loading the stream; the "
                f"differing block offsets are in source_differs_pages."
            )

    zstd(raw_stream, os.path.join(out, f"{name}.mig.zst"))
    for t, rawf in truths_raw:
        data = bytearray(open(rawf, "rb").read())
        for lo, hi in t["exclude"]:  # excluded bytes are stored as zeros
            data[lo:hi] = bytes(hi - lo)
        with open(rawf, "wb") as f:
            f.write(data)
        if t["block"] == "pc.bios":
            # the firmware ROM is identical in every x86 sample: store it once
            shared = os.path.join(out, "x86.pc.bios.zst")
            same = os.path.exists(shared) and subprocess.run(
                ["zstd", "-dc", shared], capture_output=True, check=True
            ).stdout == bytes(data)
            if same or not os.path.exists(shared):
                t["file"] = "x86.pc.bios.zst"
        dst = os.path.join(out, t["file"])
        if not os.path.exists(dst) or t["file"] != "x86.pc.bios.zst":
            zstd(rawf, dst)

    params = dict(s["params"])
    if any("downtime-limit raised" in n for n in notes):
        params["downtime-limit (raised during migration)"] = 2000
    entry = {
        "name": name,
        "stream": f"{name}.mig.zst",
        "stream_size": len(stream_bytes),
        "machine": s["machine"],
        "machine_type_in_stream": machine_type,
        "arch": s["arch"],
        "qemu_version": qemu_version,
        "capabilities": s["caps"],
        "parameters": params,
        "transport": uri.replace(raw_stream, "FILE"),
        "ram_block": main["name"],
        "ram_size": size,
        "ram_blocks": blocks,
        "truth": truths,
        "query_migrate": {
            k: final.get(k)
            for k in (
                "status",
                "total-time",
                "downtime",
                "setup-time",
                "expected-downtime",
                "ram",
                "xbzrle-cache",
                "compression",
            )
            if k in final
        },
        "qemu_cmdline": " ".join(q.cmdline).replace(workdir + "/", ""),
        "guest_ticks_printed": ticks if s["arch"] == "x86_64" else None,
        "notes": " ".join([s["notes"]] + notes),
    }
    return entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated sample names")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--keep-raw", help="keep the temporary work directory here")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    names = a.only.split(",") if a.only else [s["name"] for s in SAMPLES]
    unknown = set(names) - {s["name"] for s in SAMPLES}
    if unknown:
        sys.exit(f"unknown sample(s): {sorted(unknown)}")
    workdir = a.keep_raw or tempfile.mkdtemp(prefix="migsamples-")
    os.makedirs(workdir, exist_ok=True)
    manifest_path = os.path.join(out, "samples.json")
    manifest = []
    if os.path.exists(manifest_path):
        manifest = json.load(open(manifest_path))
    order = [s["name"] for s in SAMPLES]
    failed = []
    try:
        guest_img = build_guest(workdir)
        for s in SAMPLES:
            if s["name"] not in names:
                continue
            try:
                e = capture(s, out, workdir, guest_img, not a.no_verify)
            except Exception as ex:  # keep going with the other samples
                log(f"  FAILED {s['name']}: {ex}")
                failed.append((s["name"], str(ex)))
                continue
            manifest = [m for m in manifest if m["name"] != s["name"]] + [e]
            manifest.sort(key=lambda m: order.index(m["name"]) if m["name"] in order else 99)
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=1)
                f.write("\n")
    finally:
        if not a.keep_raw:
            shutil.rmtree(workdir, ignore_errors=True)
    for n, err in failed:
        log(f"failed: {n}: {err}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
