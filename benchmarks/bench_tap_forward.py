#!/usr/bin/env python3
"""The tap alone, without QEMU: how fast it forwards and records, and its CPU cost.

A sender process pushes SIZE bytes (a "QEVM" main channel of random data) through a
TapSession (in this process) to a sink process that discards them, over unix
sockets; the tap records the channel to --dir.  Prints wall time, throughput,
the tap's CPU time (this process: user + sys), and whether the recording is
complete and byte-exact.  Compare the throughput with QEMU's own migration rate
(about 0.5-1 GiB/s on this machine, benchmarks/bench_tap.py): the tap must be
well above it to stay out of the way.

    python3 benchmarks/bench_tap_forward.py [--size-mib 1024] [--dir /var/tmp/migstream-bench/fwd]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from migstream.capture.sessions import TapSession  # noqa: E402

BENCH_DIR = os.environ.get("MIGSTREAM_BENCH_DIR", "/var/tmp/migstream-bench")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default=os.path.join(BENCH_DIR, "fwd"), help="where the recording goes")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    chunk = b"QEVM" + os.urandom((1 << 20) - 4)
    expected = hashlib.sha256()
    for _ in range(args.size_mib):
        expected.update(chunk)
    for run in range(args.repeat):
        work = tempfile.mkdtemp(prefix="mgs-fwd-")
        sink_path = os.path.join(work, "sink.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(sink_path)
        srv.listen(1)
        sink = os.fork()
        if sink == 0:
            conn, _ = srv.accept()
            buf = bytearray(1 << 20)
            while conn.recv_into(buf):
                pass
            os._exit(0)
        srv.close()
        shutil.rmtree(args.dir, ignore_errors=True)
        tap = TapSession(f"unix:{work}/tap.sock", f"unix:{sink_path}", args.dir).start()
        sender = os.fork()
        if sender == 0:
            s = socket.socket(socket.AF_UNIX)
            s.connect(f"{work}/tap.sock")
            for _ in range(args.size_mib):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
            os._exit(0)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        tap.wait()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        doc = tap.stop()
        os.waitpid(sender, 0)
        os.waitpid(sink, 0)
        ch = doc["channels"][0]
        h = hashlib.sha256()
        with open(os.path.join(args.dir, ch["file"]), "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
        exact = h.digest() == expected.digest()
        size = args.size_mib << 20
        print(
            f"run {run + 1}: {size / 2**20:.0f} MiB in {wall:.3f} s = {size / wall / 2**20:.0f} MiB/s, "
            f"tap CPU {r1.ru_utime - r0.ru_utime:.3f} s user + {r1.ru_stime - r0.ru_stime:.3f} s sys, "
            f"recording {ch['recording']}, {ch['recorded_bytes']} bytes, byte-exact {exact}",
            flush=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(args.dir, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
