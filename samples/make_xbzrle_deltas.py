#!/usr/bin/env python3
"""Capture QEMU 7.2 streams full of designed XBZRLE deltas: samples x86-xbzrle-deltas
and x86-xbzrle-aging (small cache: collisions and CACHED_PAGE_LIFETIME aging).

Usage:  python samples/make_xbzrle_deltas.py [--only NAME,...] [--out samples/]
                                             [--no-verify] [--keep-raw DIR]

The x86-xbzrle capture only holds small deltas (a running guest increments
dwords).  To hold the encoder to QEMU's on every kind of delta, this script
drives guest memory itself, through QEMU's qtest protocol (`-qtest`, which
works alongside TCG; the VM stays paused with -S, so nothing but us writes RAM):

  1. 48 test pages at 2 MiB (set A: even pages, set B: odd) get base content;
  2. migrate with xbzrle, xbzrle-cache-size 64 MiB (bigger than all RAM blocks'
     ram_addr span, so the direct-mapped cache never has collisions),
     max-bandwidth 256 KiB/s, downtime-limit 1 ms (so any dirty page keeps the
     migration iterating);
  3. every time query-migrate's dirty-sync-count goes up, mutate one set (A, B,
     A, ...).  QEMU is then sending the other set, so each sent page carries
     exactly one designed delta relative to its previous send: single dwords,
     scattered bytes, runs split by single equal bytes, runs and gaps longer
     than 127 (two-byte lengths), one-run deltas whose encoding lands on each
     side of the 4096-byte limit (with and without unchanged bytes after them),
     zeroed pages, full rewrites (overflow) and rewrites with equal content;
  4. stop mutating; the next sync finds nothing dirty and QEMU completes;
  5. pmemsave pc.ram (and pc.bios) as truth, optionally load the stream into a
     paused destination and compare, write the sample and its samples.json entry.

Reuses make_samples.py's QEMU/QMP helpers.
"""

import argparse
import base64
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_samples as ms  # noqa: E402

MiB = ms.MiB
PAGE = 4096
TEST_BASE = 2 * MiB
TEST_PAGES = 48

# Which of the two alternately mutated sets test page k (0-based) belongs to.
SET_RULES = {"k % 2": lambda k: k % 2, "(k + k // 16) % 2": lambda k: (k + k // 16) % 2}

CONFIGS = {
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


class QTest:
    def __init__(self, path):
        deadline = time.time() + 10
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.sock.makefile("rwb")

    def write(self, addr, data):
        self.f.write(f"b64write {addr:#x} {len(data)} {base64.b64encode(data).decode()}\n".encode())
        self.f.flush()
        reply = self.f.readline()
        if not reply.startswith(b"OK"):
            raise RuntimeError(f"qtest b64write: {reply!r}")

    def close(self):
        self.sock.close()


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


def capture(NAME, cfg, out, workdir, do_verify):
    ms.log(f"=== {NAME}")
    PARAMS, ROUNDS = cfg["params"], cfg["rounds"]
    total_pages = TEST_PAGES + cfg["ballast"]
    set_of = SET_RULES[cfg["sets"]]
    rnd = random.Random(20261125)
    qt_sock = os.path.join(workdir, "qtest.sock")
    raw_stream = os.path.join(workdir, f"{NAME}.mig")
    guest_img = os.path.join(workdir, "empty.img")  # only for make_samples.verify's -drive
    with open(guest_img, "wb") as f:
        f.truncate(MiB)
    args = ["-S", "-M", "pc", "-m", "32M", "-qtest", f"unix:{qt_sock},server=on,wait=off", "-qtest-log", "/dev/null"]
    q = ms.Qemu("qemu-system-x86_64", args, workdir, NAME)
    qt = None
    used = {}
    try:
        ver = q.cmd("query-version")
        qv = ver["qemu"]
        qemu_version = f"{qv['major']}.{qv['minor']}.{qv['micro']}" + (
            f" ({ver['package'].strip()})" if ver.get("package") else ""
        )
        qt = QTest(qt_sock)
        pages = {}
        for k in range(total_pages):
            pages[k] = base_page(rnd, k)
            qt.write(TEST_BASE + k * PAGE, pages[k])
        blocks = ms.ramblocks(q)
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": "xbzrle", "state": True}])
        q.cmd("migrate-set-parameters", **PARAMS)
        uri = f"exec:cat > {raw_stream}"
        q.cmd("migrate", uri=uri)
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
            if sync is not None and sync != last_sync and done_rounds < ROUNDS:
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
        ms.log(
            f"  completed after {done_rounds} mutation rounds: dirty-sync-count="
            f"{ram.get('dirty-sync-count')} xbzrle={st.get('xbzrle-cache')}"
        )
        if done_rounds < ROUNDS:
            raise RuntimeError(f"migration completed after only {done_rounds} mutation rounds")
        truths, truths_raw = [], []
        main = next(b for b in blocks if b["name"] == "pc.ram")
        bios = next(b for b in blocks if b["name"] == "pc.bios")
        for blk, gpa, length, ex in [
            ("pc.ram", 0, main["used"], ms.X86_EXCLUDE),
            ("pc.bios", (1 << 32) - bios["used"], bios["used"], []),
        ]:
            rawf = os.path.join(workdir, f"{NAME}.{blk}.bin")
            q.cmd("pmemsave", val=gpa, size=length, filename=rawf)
            t = {
                "file": f"{NAME}.ram.zst" if blk == "pc.ram" else "x86.pc.bios.zst",
                "block": blk,
                "block_offset": 0,
                "length": length,
                "gpa": gpa,
                "exclude": ex,
                "source": "source-pmemsave",
            }
            truths.append(t)
            truths_raw.append((t, rawf))
        final = q.cmd("query-migrate")
    finally:
        if qt is not None:
            qt.close()
        q.close()

    notes = [f"mutations applied: {json.dumps(used, sort_keys=True)}."]
    ram_dump = open(truths_raw[0][1], "rb").read()
    for k in range(total_pages):
        if ram_dump[TEST_BASE + k * PAGE : TEST_BASE + (k + 1) * PAGE] != pages[k]:
            raise RuntimeError(f"test page {k} differs from what was written")
    s = dict(name=NAME, arch="x86_64", machine="pc", mode="paused")
    if do_verify:
        for t, dst, diffs in ms.verify(s, workdir, guest_img, raw_stream, truths_raw, ["xbzrle"]):
            if diffs:
                raise RuntimeError(f"destination differs from source in {t['block']}: {diffs[:8]}")
            ms.log(f"  verify {t['block']}: destination == source")
            notes.append(
                f"{t['block']}: a paused QEMU 7.2 destination loading this stream has "
                f"identical memory (outside excludes)."
            )

    ms.zstd(raw_stream, os.path.join(out, f"{NAME}.mig.zst"))
    data = bytearray(ram_dump)
    for lo, hi in ms.X86_EXCLUDE:
        data[lo:hi] = bytes(hi - lo)
    with open(truths_raw[0][1], "wb") as f:
        f.write(data)
    ms.zstd(truths_raw[0][1], os.path.join(out, f"{NAME}.ram.zst"))
    shared = os.path.join(out, "x86.pc.bios.zst")
    bios_dump = open(truths_raw[1][1], "rb").read()
    if (
        not os.path.exists(shared)
        or ms.subprocess.run(["zstd", "-dc", shared], capture_output=True, check=True).stdout != bios_dump
    ):
        truths[1]["file"] = f"{NAME}.pc.bios.zst"
        ms.zstd(truths_raw[1][1], os.path.join(out, truths[1]["file"]))

    return {
        "name": NAME,
        "stream": f"{NAME}.mig.zst",
        "stream_size": os.path.getsize(raw_stream),
        "machine": "pc",
        "machine_type_in_stream": ms.check_header(raw_stream),
        "arch": "x86_64",
        "qemu_version": qemu_version,
        "capabilities": ["xbzrle"],
        "parameters": PARAMS,
        "transport": "exec:cat > FILE",
        "ram_block": "pc.ram",
        "ram_size": main["used"],
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
        "guest_ticks_printed": None,
        "test_pages": {"gpa": TEST_BASE, "count": total_pages, "sets": cfg["sets"]},
        "notes": (
            "i440fx paused (-S), RAM written only through the qtest protocol: "
            f"{total_pages} pages at {TEST_BASE:#x} mutated with designed XBZRLE deltas, "
            "two sets of pages (test_pages.sets) mutated alternately, one set per dirty sync "
            f"(see make_xbzrle_deltas.py, config {json.dumps(cfg, sort_keys=True)}). " + " ".join(notes)
        ),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated sample names (default: all)")
    ap.add_argument("--out", default=ms.HERE)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--keep-raw", help="keep the temporary work directory here")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    names = a.only.split(",") if a.only else list(CONFIGS)
    for name in names:
        if name not in CONFIGS:
            sys.exit(f"unknown sample {name}")
        workdir = a.keep_raw or tempfile.mkdtemp(prefix="migxbzrle-")
        os.makedirs(workdir, exist_ok=True)
        try:
            entry = capture(name, CONFIGS[name], out, workdir, not a.no_verify)
        finally:
            if not a.keep_raw:
                shutil.rmtree(workdir, ignore_errors=True)
        path = os.path.join(out, "samples.json")
        manifest = json.load(open(path)) if os.path.exists(path) else []
        manifest = [m for m in manifest if m["name"] != name] + [entry]
        with open(path, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
