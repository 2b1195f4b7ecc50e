#!/usr/bin/env python3
"""TCP reassembly speed of containers/pcap on captures with 1448-byte segments, and the
packet libraries we could have used (dpkt, python-pcapng, scapy) on the same files.

    python3 benchmarks/bench_pcap.py [--mib 512] [--libs VENV_PYTHON] [--real CAPTURE]

Writes a capture of one connection carrying --mib MiB of stream (Ethernet, IPv4, 1448-
byte segments, written from tests/support/pcapwrite.py's framing) under /var/tmp, then
times, each once, in a fresh process:
  migstream   index the file, reassemble the connection, read every byte (1 MiB chunks)
  dpkt        dpkt.pcap.Reader + Ethernet/IP/TCP parsing (no reassembly)
  pcapng      python-pcapng FileScanner over the same packets as pcapng (no parsing)
  scapy       scapy RawPcapReader (no parsing) on a 1/8 slice; Ether() parsing on 1/64
The libraries run under --libs (a Python with them installed: they are not
dependencies of migstream).  --real adds the same measurements on a real capture.
Figures are MB/s of TCP payload (10^6 bytes) per second of the process's CPU time (the machine
is shared: wall time varies with load, CPU time much less), and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import pcapwrite as pw  # noqa: E402

MSS = 1448


def make_capture(path: Path, mib: int, pcapng: bool = False) -> int:
    """One connection with ``mib`` MiB of pseudo-random stream in MSS segments."""
    block = b"QEVM" + os.urandom((1 << 20) - 4)  # found as a migration's main channel
    total = mib << 20
    seq = 1000
    with open(path, "wb", buffering=8 << 20) as f:
        if pcapng:
            head = pw.pcapng_section(pw.ETHERNET, [])
            f.write(head)
        else:
            pw.write_pcap(f, pw.ETHERNET, [])
        pos = 0
        syn = pw.frame(
            pw.ETHERNET, pw.tcp_packet("10.0.0.1", "10.0.0.2", 5000, 4444, seq - 1, 0, pw.SYN, b"", False), False
        )
        frames = [syn]
        while pos < total:
            n = min(MSS, total - pos)
            off = pos % (1 << 20)
            payload = block[off : off + n] if off + n <= len(block) else (block + block)[off : off + n]
            frames.append(
                pw.frame(
                    pw.ETHERNET,
                    pw.tcp_packet("10.0.0.1", "10.0.0.2", 5000, 4444, seq + pos, 0, 0x18, payload, False),
                    False,
                )
            )
            pos += n
            if len(frames) >= 4096:
                _flush(f, frames, pcapng)
                frames = []
        _flush(f, frames, pcapng)
    return total


def _flush(f, frames, pcapng):
    if pcapng:
        for fr in frames:
            body = struct.pack("<IIIII", 0, 0, 0, len(fr), len(fr)) + fr
            body += bytes(-len(body) % 4)
            f.write(struct.pack("<II", 6, len(body) + 12) + body + struct.pack("<I", len(body) + 12))
    else:
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)))
            f.write(fr)


OURS = """
import sys, time, resource
from migstream.containers.pcap import PacketCapture
t = time.process_time()
cap = PacketCapture(sys.argv[1])
t1 = time.process_time()
mig = cap.migrations[0] if cap.migrations else None
n = 0
for c in [mig.main, *mig.multifd]:
    reader = cap.reader(c.forward)
    while chunk := reader.read(4 << 20):  # as StreamSource reads it
        n += len(chunk)
t2 = time.process_time()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
print(f"{n} {t2 - t:.3f} index {t1 - t:.3f} read {t2 - t1:.3f} rss {rss}")
"""
DPKT = """
import sys, time, resource, dpkt
t = time.process_time(); n = 0
with open(sys.argv[1], 'rb') as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
            n += len(ip.data.data)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
print(f"{n} {time.process_time() - t:.3f} rss {rss}")
"""
PCAPNG = """
import sys, time, resource
from pcapng import FileScanner
from pcapng.blocks import EnhancedPacket
t = time.process_time(); n = 0
with open(sys.argv[1], 'rb') as f:
    for b in FileScanner(f):
        if isinstance(b, EnhancedPacket):
            n += len(b.packet_data) - 54
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
print(f"{n} {time.process_time() - t:.3f} rss {rss}")
"""
SCAPY_RAW = """
import sys, time, resource
from scapy.utils import RawPcapReader
limit = int(sys.argv[2]); t = time.process_time(); n = 0
for i, (buf, meta) in enumerate(RawPcapReader(sys.argv[1])):
    if i >= limit: break
    n += len(buf) - 54
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
print(f"{n} {time.process_time() - t:.3f} rss {rss}")
"""
SCAPY_PARSE = """
import sys, time, resource
from scapy.utils import RawPcapReader
from scapy.layers.l2 import Ether
from scapy.layers.inet import TCP
limit = int(sys.argv[2]); t = time.process_time(); n = 0
for i, (buf, meta) in enumerate(RawPcapReader(sys.argv[1])):
    if i >= limit: break
    p = Ether(buf)
    if TCP in p:
        n += len(bytes(p[TCP].payload))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
print(f"{n} {time.process_time() - t:.3f} rss {rss}")
"""


def measure(python: str, code: str, *args) -> str:
    r = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    n, secs, *rest = r.stdout.split()
    rate = int(n) / float(secs) / 1e6
    return f"{rate:8.1f} MB/s  ({int(n) / 1e6:.0f} MB in {secs} s; {' '.join(rest)} MiB)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--libs", help="a Python with dpkt, python-pcapng and scapy installed")
    ap.add_argument("--real", help="a real capture file of a migration (pcap)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        cap = Path(tmp) / "big.pcap"
        capng = Path(tmp) / "big.pcapng"
        total = make_capture(cap, a.mib)
        packets = -(-total // MSS)
        print(
            f"capture: {a.mib} MiB of stream in {packets} segments of {MSS} bytes, {cap.stat().st_size >> 20} MiB file"
        )
        print(f"migstream   {measure(sys.executable, OURS, cap)}")
        if a.libs:
            make_capture(capng, a.mib, pcapng=True)
            print(f"dpkt        {measure(a.libs, DPKT, cap)}")
            print(f"pcapng      {measure(a.libs, PCAPNG, capng)}")
            print(f"scapy raw   {measure(a.libs, SCAPY_RAW, cap, packets // 8)}")
            print(f"scapy parse {measure(a.libs, SCAPY_PARSE, cap, packets // 64)}")
        if a.real:
            print(f"real capture {a.real}:")
            print(f"migstream   {measure(sys.executable, OURS, a.real)}")
            if a.libs:
                print(f"dpkt        {measure(a.libs, DPKT, a.real)}")
                print(f"scapy raw   {measure(a.libs, SCAPY_RAW, a.real, 1 << 30)}")
                print(f"scapy parse {measure(a.libs, SCAPY_PARSE, a.real, 1 << 30)}")


if __name__ == "__main__":
    main()
