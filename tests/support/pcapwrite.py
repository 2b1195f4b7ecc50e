"""Writing packet captures for tests and benchmarks: the connections of a real captured
migration re-cut into segments of a chosen size and order, framed in any link type,
IPv4 or IPv6, written as libpcap (either byte order, micro- or nanosecond) or pcapng.

Written from the format descriptions (tcpdump.org linktypes, the pcap and pcapng
drafts), independently of migstream/containers/pcap, which reads them.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass

SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08
ETHERNET, NULL, RAW, LINUX_SLL, LINUX_SLL2 = 1, 0, 101, 113, 276


@dataclass
class Conn:
    """A connection to write: the client's bytes and the server's answer."""

    client: tuple[str, int]
    server: tuple[str, int]
    data: bytes
    answer: bytes = b""
    isn: int = 1000
    server_isn: int = 5000


def _addr(ip: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(ip).packed


def tcp_packet(src, dst, sport, dport, seq, ack, flags, payload: bytes, v6: bool) -> bytes:
    """An IP packet holding one TCP segment (checksums left 0: readers do not check them)."""
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    if v6:
        ip = struct.pack(">IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64, _addr(src), _addr(dst))
    else:
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total & 0xFFFF, 0, 0x4000, 64, 6, 0, _addr(src), _addr(dst))
    return ip + tcp + payload


def frame(link: int, ip_packet: bytes, v6: bool) -> bytes:
    etype = 0x86DD if v6 else 0x0800
    if link == ETHERNET:
        return b"\x02" * 6 + b"\x04" * 6 + struct.pack(">H", etype) + ip_packet
    if link == NULL:
        return struct.pack("<I", 30 if v6 else 2) + ip_packet
    if link == RAW:
        return ip_packet
    if link == LINUX_SLL:
        return struct.pack(">HHH8sH", 0, 772, 6, bytes(8), etype) + ip_packet
    if link == LINUX_SLL2:
        return struct.pack(">HHIHBB8s", etype, 0, 1, 772, 0, 6, bytes(8)) + ip_packet
    raise ValueError(link)


def segments(conn: Conn, mss: int, *, disorder: float = 0.0, dup: float = 0.0, overlap: float = 0.0, rng=None):
    """(client side?, seq, flags, payload) of a connection: handshake, data cut at
    ``mss``, the answer, FINs.  ``disorder``: fraction of segments swapped with the
    next; ``dup``: fraction retransmitted later; ``overlap``: fraction re-sent as a
    segment straddling two."""
    rng = rng or random.Random(1)
    out = [(True, conn.isn, SYN, b""), (False, conn.server_isn, SYN | ACK, b"")]
    data = conn.data
    segs = [(True, conn.isn + 1 + i, ACK | PSH, data[i : i + mss]) for i in range(0, len(data), mss)]
    extra = []
    for k, (c, seq, fl, p) in enumerate(segs):
        if dup and rng.random() < dup:
            extra.append((k + rng.randint(1, 5), (c, seq, fl, p)))
        if overlap and rng.random() < overlap and k + 1 < len(segs):
            half = len(p) // 2
            off = seq - conn.isn - 1 + half
            extra.append((k + 2, (c, seq + half, fl, data[off : off + mss])))
    for pos, s in sorted(extra, key=lambda e: -e[0]):
        segs.insert(min(pos, len(segs)), s)
    if disorder:
        for k in range(len(segs) - 1):
            if rng.random() < disorder:
                segs[k], segs[k + 1] = segs[k + 1], segs[k]
    out += segs
    if conn.answer:
        out.append((False, conn.server_isn + 1, ACK | PSH, conn.answer))
    out.append((True, conn.isn + 1 + len(data), FIN | ACK, b""))
    out.append((False, conn.server_isn + 1 + len(conn.answer), FIN | ACK, b""))
    return out


def frames(conns: list[Conn], link: int, *, v6: bool = False, mss: int = 1448, interleave: bool = True, **cut):
    """The frames of all connections, interleaved round-robin (as concurrent channels)."""
    per = []
    for c in conns:
        fs = []
        for client, seq, flags, payload in segments(c, mss, **cut):
            (src, sport), (dst, dport) = (c.client, c.server) if client else (c.server, c.client)
            fs.append(frame(link, tcp_packet(src, dst, sport, dport, seq, 0, flags, payload, v6), v6))
        per.append(fs)
    if not interleave:
        return [f for fs in per for f in fs]
    out = []
    iters = [iter(fs) for fs in per]
    while iters:
        for it in list(iters):
            f = next(it, None)
            if f is None:
                iters.remove(it)
            else:
                out.append(f)
    return out


def write_pcap(f: io.RawIOBase | io.BufferedIOBase, link: int, frames_, *, big_endian=False, nano=False, snaplen=0):
    bo = ">" if big_endian else "<"
    f.write(struct.pack(bo + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen or 262144, link))
    for i, fr in enumerate(frames_):
        cap = fr[:snaplen] if snaplen else fr
        f.write(struct.pack(bo + "IIII", i, 0, len(cap), len(fr)))
        f.write(cap)


def pcapng_section(link: int, frames_, *, big_endian=False) -> bytes:
    bo = ">" if big_endian else "<"

    def block(btype, body):
        body += bytes(-len(body) % 4)
        n = len(body) + 12
        return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)

    out = [block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out.append(block(1, struct.pack(bo + "HHI", link, 0, 262144)))
    out.append(block(0x80000001, b"custom block, skipped"))
    for i, fr in enumerate(frames_):
        out.append(block(6, struct.pack(bo + "IIIII", 0, 0, i, len(fr), len(fr)) + fr))
    return b"".join(out)
