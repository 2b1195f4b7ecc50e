#!/usr/bin/env python3
"""Capture multifd, mapped-ram and QEMU 10 samples (issue 6), plus ground truth.

Usage:  python samples/make_samples_v2.py [--only NAME[,NAME...]] [--qemu10 ROOT]
                                          [--no-verify] [--keep-raw DIR]

QEMU 10 comes from samples/get_qemu10.sh (default ROOT /var/tmp/qemu10); QEMU 7.2 is
the system one.  Reuses make_samples.py's helpers (guest, QMP wrapper, pmemsave).

Transports:
  * "exec"  exec:cat > FILE (plain stream)
  * "file"  file:FILE (QEMU 8.2+; needed by mapped-ram)
  * "multi" a unix socket served by MultiCapture: every accepted connection is saved
            to its own file; files are then named by what their first bytes say
            ("QEVM" -> main stream, MULTIFD_MAGIC 0x11223344 -> channel <id byte>).

Truth: pmemsave of the stopped source.  With --verify (default) the capture is loaded
into a paused destination of the same QEMU (multifd: the channel files are replayed
over a unix socket by MultiReplay, main connection first, all connections fed in
parallel) and its pmemsave is compared; where they differ, the destination's memory
is the truth (what QEMU itself loads from these bytes) and the difference is listed.
"""

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_samples as ms  # noqa: E402

MiB = 1 << 20
MULTIFD_MAGIC = 0x11223344
RUNNING = {"max-bandwidth": 32 * MiB, "downtime-limit": 30}


def multifd(comp, channels=2):
    return {"multifd-channels": channels, "multifd-compression": comp}


# mode "running": the test guest dirties pages during migration.
# mode "image": pc.ram is preloaded from make_samples.make_ram_image() (the guest's
# page-kind scheme) and the VM never runs (-S), so every such VM, on QEMU 7.2 or 10,
# has the same pc.ram: one truth file (x86-image.ram.zst) serves them all, which keeps
# samples/ small.  (Migrating one stopped VM several times is refused: "Can't migrate
# the vm that was paused due to previous migration".)
SAMPLES = [
    # --- QEMU 10, main stream only
    dict(
        name="q10-running",
        qemu="10",
        mode="running",
        caps=[],
        params=dict(RUNNING),
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
    dict(
        name="x86-multifd-nocomp",
        qemu="7.2",
        mode="running",
        caps=["multifd"],
        params=dict(RUNNING, **multifd("none")),
        transport="multi",
        notes="QEMU 7.2 multifd, 2 channels, no compression, guest dirtying (several sync rounds).",
    ),
    dict(
        name="x86-multifd-zlib",
        qemu="7.2",
        mode="image",
        caps=["multifd"],
        params=multifd("zlib"),
        transport="multi",
        notes="QEMU 7.2 multifd, 2 channels, zlib, stopped guest.",
    ),
    dict(
        name="x86-multifd-zstd",
        qemu="7.2",
        mode="image",
        caps=["multifd"],
        params=multifd("zstd"),
        transport="multi",
        notes="QEMU 7.2 multifd, 2 channels, zstd, stopped guest.",
    ),
    dict(
        name="q10-multifd-nocomp",
        qemu="10",
        mode="running",
        caps=["multifd"],
        params=dict(RUNNING, **multifd("none")),
        transport="multi",
        notes="QEMU 10.0 multifd, 2 channels, no compression, guest dirtying; zero "
        "pages listed in packets (zero-page-detection multifd, the default).",
    ),
    dict(
        name="q10-multifd-zlib",
        qemu="10",
        mode="image",
        caps=["multifd"],
        params=multifd("zlib"),
        transport="multi",
        notes="QEMU 10.0 multifd, 2 channels, zlib, stopped guest.",
    ),
    dict(
        name="q10-multifd-zstd",
        qemu="10",
        mode="image",
        caps=["multifd"],
        params=multifd("zstd"),
        transport="multi",
        notes="QEMU 10.0 multifd, 2 channels, zstd, stopped guest.",
    ),
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


def qemu10_wrapper(root, workdir):
    """A shell wrapper so that make_samples.Qemu can start QEMU 10 like any binary."""
    path = os.path.join(workdir, "qemu10-system-x86_64")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            f"QEMU_MODULE_DIR={root}/usr/lib/x86_64-linux-gnu/qemu "
            f"exec {root}/usr/bin/qemu-system-x86_64 -L {root}/usr/share/qemu "
            '-L /usr/share/seabios "$@"\n'
        )
    os.chmod(path, 0o755)
    return path


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
    for fn in files:
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
    args = ["-M", "pc", "-m", "32M", "-drive", f"file={guest_img},format=raw,if=ide,snapshot=on"]
    if s["mode"] == "image":
        img = os.path.join(os.path.dirname(guest_img), "ram.img")
        if not os.path.exists(img):
            ms.make_ram_image(img, IMAGE_SIZE)
        args += [
            "-machine",
            "memory-backend=pc.ram",
            "-object",
            f"memory-backend-file,id=pc.ram,size={IMAGE_SIZE},mem-path={img},share=off",
        ]
        if not incoming:
            args += ["-S"]
    if incoming:
        args += ["-S", "-incoming", "defer"]
    return args


def set_migration(q, s):
    if s["caps"]:
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in s["caps"]])
    if s["params"]:
        q.cmd("migrate-set-parameters", **s["params"])


def verify(s, binary, workdir, guest_img, main, channels, truths_raw):
    q = ms.Qemu(binary, x86_args(s, guest_img, incoming=True), workdir, f"{s['name']}-dst")
    conns = []
    try:
        set_migration(
            q, {"caps": s["caps"], "params": {k: v for k, v in s["params"].items() if k.startswith("multifd")}}
        )
        if s["transport"] == "multi":
            sock = os.path.join(workdir, f"{s['name']}-dst.sock")
            q.cmd("migrate-incoming", uri=f"unix:{sock}")
            conns, threads = replay(sock, [main] + channels)
        elif s["transport"] == "file":
            q.cmd("migrate-incoming", uri=f"file:{main}")
        else:
            q.cmd("migrate-incoming", uri=f"exec:cat {main}")
        return ms.loaded_truth_diffs(q, s, workdir, truths_raw, ("paused", "postmigrate"))
    finally:
        q.close()
        for c in conns:
            c.close()


def migrate_once(q, s, workdir, all_caps, qemu):
    """One migration of the (already prepared) source VM; returns (uri, main file,
    channel files, final query-migrate, notes)."""
    name = s["name"]
    raw_main = os.path.join(workdir, f"{name}.mig")
    off = [c for c in all_caps if c not in s["caps"]]
    if off:
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": False} for c in off])
    q.cmd("migrate-set-parameters", **DEFAULT_PARAMS[qemu])
    set_migration(q, s)
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
    ms.log(f"  {name}: migrate {uri} caps={s['caps']} params={s['params']}")
    try:
        q.cmd("migrate", uri=uri)
        final, notes = ms.wait_migration(q, s)
    finally:
        if server is not None:
            server.finish()
    ram = final.get("ram", {})
    ms.log(
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


def take_truth(q, blocks, workdir, stem):
    main = next(b for b in blocks if b["name"] == "pc.ram")
    bios = next(b for b in blocks if b["name"] == "pc.bios")
    truths, truths_raw = [], []
    for blk, gpa, length, ex in [
        ("pc.ram", 0, main["used"], ms.X86_EXCLUDE),
        ("pc.bios", (1 << 32) - bios["used"], bios["used"], []),
    ]:
        rawf = os.path.join(workdir, f"{stem}.{blk}.bin")
        q.cmd("pmemsave", val=gpa, size=length, filename=rawf)
        t = {
            "file": f"{stem}.ram.zst" if blk == "pc.ram" else f"{stem}.{blk}.zst",
            "block": blk,
            "block_offset": 0,
            "length": length,
            "gpa": gpa,
            "exclude": ex,
            "source": "source-pmemsave",
        }
        truths.append(t)
        truths_raw.append((t, rawf))
    return truths, truths_raw


def store_truth(out, truths_raw):
    for t, rawf in truths_raw:
        data = bytearray(open(rawf, "rb").read())
        for lo, hi in t["exclude"]:  # excluded bytes are stored as zeros
            data[lo:hi] = bytes(hi - lo)
        with open(rawf, "wb") as f:
            f.write(data)
        if t["file"] == "x86-image.ram.zst":
            p = os.path.join(out, t["file"])
            if os.path.exists(p) and subprocess.run(
                ["zstd", "-dc", p], capture_output=True, check=True
            ).stdout != bytes(data):
                raise RuntimeError("pc.ram of an image-backed VM differs from x86-image.ram.zst")
        if t["block"] == "pc.bios":
            # One file per distinct firmware image (7.2's and 10's SeaBIOS differ).
            for cand in ("x86.pc.bios.zst", "x86-q10.pc.bios.zst"):
                p = os.path.join(out, cand)
                if not os.path.exists(p) or subprocess.run(
                    ["zstd", "-dc", p], capture_output=True, check=True
                ).stdout == bytes(data):
                    t["file"] = cand
                    break
        dst = os.path.join(out, t["file"])
        if not os.path.exists(dst) or not t["file"].startswith("x86."):
            if not t["file"].startswith("x86-q10.pc.bios") or not os.path.exists(dst):
                ms.zstd(rawf, dst)


def capture_group(group, out, workdir, guest_img, binaries, do_verify):
    """Migrate one VM once per sample of the group; returns the samples.json entries."""
    first = group[0]
    stem = "x86-image" if first["mode"] == "image" else first["name"]
    ms.log(f"=== {stem}: {[s['name'] for s in group]}")
    qemu = first["qemu"]
    binary = binaries[qemu]
    all_caps = sorted({c for s in group for c in s["caps"]})
    q = ms.Qemu(binary, x86_args(first, guest_img), workdir, stem)
    runs = []
    try:
        ver = q.cmd("query-version")
        qv = ver["qemu"]
        qemu_version = f"{qv['major']}.{qv['minor']}.{qv['micro']}" + (
            f" ({ver['package'].strip()})" if ver.get("package") else ""
        )
        t0 = time.time()
        while first["mode"] != "image" and "migstream guest ready" not in q.serial_text():
            if time.time() - t0 > 60:
                raise RuntimeError("guest did not print 'ready'")
            time.sleep(0.1)
        if first["mode"] != "image":
            time.sleep(2.0)
        if first["mode"] == "stopped":
            q.cmd("stop")
        blocks = ms.ramblocks(q)
        truths = truths_raw = None
        for s in group:
            runs.append((s,) + migrate_once(q, s, workdir, all_caps, qemu))
            if truths is None:
                truths, truths_raw = take_truth(q, blocks, workdir, stem)
    finally:
        q.close()

    shared_notes = []
    if do_verify:
        for s, uri, raw_main, channels, final, notes in runs:
            for t, dst, diffs in verify(s, binary, workdir, guest_img, raw_main, channels, truths_raw):
                if not diffs:
                    notes.append(
                        f"{t['block']}: a paused QEMU {qemu} destination loading this "
                        f"capture has identical memory (outside excludes)."
                    )
                    continue
                if len(group) > 1:
                    raise RuntimeError(
                        f"{s['name']}: destination differs from the stopped source "
                        f"in {len(diffs)} pages of {t['block']}"
                    )
                ms.log(f"  verify {t['block']}: {len(diffs)} pages differ -> truth from destination")
                rawf = [r for tt, r in truths_raw if tt is t][0]
                shutil.copyfile(dst, rawf)
                t["source"] = "destination-load-pmemsave"
                t["source_differs_pages"] = diffs
                notes.append(
                    f"{t['block']}: the stopped source's pmemsave differed from what a "
                    f"QEMU {qemu} destination loads from this capture in {len(diffs)} pages; "
                    f"the truth is the destination's pmemsave (offsets in source_differs_pages)."
                )
    store_truth(out, truths_raw)
    if first["mode"] == "image":
        img = open(os.path.join(workdir, "ram.img"), "rb").read()
        dump = open(truths_raw[0][1], "rb").read()
        same = all(
            img[o : o + 4096] == dump[o : o + 4096]
            for o in range(0, len(img), 4096)
            if not any(lo <= o < hi for lo, hi in ms.X86_EXCLUDE)
        )
        shared_notes.append(
            "pc.ram preloaded from make_samples.make_ram_image(32 MiB) via "
            "memory-backend-file (share=off), VM never run (-S); "
            + ("pmemsave equals the image outside the excluded window." if same else "pmemsave DIFFERS from the image.")
        )

    entries = []
    for s, uri, raw_main, channels, final, notes in runs:
        ms.zstd(raw_main, os.path.join(out, f"{s['name']}.mig.zst"))
        chan_entries = []
        for i, ch in enumerate(channels):
            fn = f"{s['name']}.ch{i}.zst"
            ms.zstd(ch, os.path.join(out, fn))
            chan_entries.append({"file": fn, "size": os.path.getsize(ch)})
        main = next(b for b in blocks if b["name"] == "pc.ram")
        entries.append(
            {
                "name": s["name"],
                "stream": f"{s['name']}.mig.zst",
                "stream_size": os.path.getsize(raw_main),
                "channels": chan_entries,
                "mapped_ram": "mapped-ram" in s["caps"],
                "machine": "pc",
                "machine_type_in_stream": ms.check_header(raw_main),
                "arch": "x86_64",
                "qemu_version": qemu_version,
                "capabilities": s["caps"],
                "parameters": s["params"],
                "transport": uri,
                "ram_block": "pc.ram",
                "ram_size": main["used"],
                "ram_blocks": blocks,
                "truth": truths,
                "query_migrate": {
                    k: final.get(k) for k in ("status", "total-time", "downtime", "setup-time", "ram") if k in final
                },
                "qemu_cmdline": " ".join(q.cmdline).replace(workdir + "/", ""),
                "notes": " ".join([s["notes"]] + notes + shared_notes),
            }
        )
    return entries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated sample names")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--qemu10", default="/var/tmp/qemu10", help="root unpacked by get_qemu10.sh")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--keep-raw", help="keep the temporary work directory here")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    names = a.only.split(",") if a.only else [s["name"] for s in SAMPLES]
    unknown = set(names) - {s["name"] for s in SAMPLES}
    if unknown:
        sys.exit(f"unknown sample(s): {sorted(unknown)}")
    workdir = a.keep_raw or tempfile.mkdtemp(prefix="migsamples2-")
    os.makedirs(workdir, exist_ok=True)
    binaries = {"7.2": "qemu-system-x86_64", "10": qemu10_wrapper(a.qemu10, workdir)}
    manifest_path = os.path.join(out, "samples.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else []
    failed = []
    try:
        guest_img = ms.build_guest(workdir)
        groups = {}
        for s in SAMPLES:
            if s["name"] in names:
                groups[s["name"]] = [s]
        for stem, group in groups.items():
            try:
                entries = capture_group(group, out, workdir, guest_img, binaries, not a.no_verify)
            except Exception as ex:
                ms.log(f"  FAILED {stem}: {ex!r}")
                failed.append((stem, repr(ex)))
                continue
            done = {e["name"] for e in entries}
            manifest = [m for m in manifest if m["name"] not in done] + entries
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=1)
                f.write("\n")
    finally:
        if not a.keep_raw:
            shutil.rmtree(workdir, ignore_errors=True)
    for n, err in failed:
        ms.log(f"failed: {n}: {err}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
