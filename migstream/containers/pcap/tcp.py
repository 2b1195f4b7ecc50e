"""TCP reassembly over a capture file, without copying payload.

One pass indexes every TCP segment: per direction of each connection (a ``Flow``), the
segment's sequence number (unwrapped to 64 bits, so a stream may pass 4 GiB and wrap the
32-bit space), the file offset of its payload and its captured length go into three
``array`` columns: 20 bytes per segment, about 1.4 % of the payload at 1448-byte
segments.  The payload stays in the file map.

``Flow.layout()`` turns the segments into pieces that cover the stream in order: when
segments arrived in order (the common case) the columns are the layout as they are;
otherwise they are sorted by sequence number, retransmitted and overlapping bytes are
compared with what is already placed (a conflicting retransmission is a fault), and the
first hole (a lost segment, or a packet cut by the snaplen) ends the layout with a
fault that says where and how many bytes are missing.  ``StreamReader`` reads the
stream from the pieces; at the fault it raises ``CaptureGap`` with the stream offset,
so that what comes before decodes normally.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from ...errors import StreamError
from .files import CaptureFile
from .links import ETHERNET
from .links import TCP_HEADER
from .links import ip_start
from .links import tcp_segment

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
_WRAP = 1 << 32
_HALF = 1 << 31
# Ethernet + IPv4 without options + the TCP fields we use, in one unpack: the fast path.
_ETH_IPV4_TCP = struct.Struct(">12xHBxH2xHxB2x4s4sHHI4xBB")
_FAST_LEN = _ETH_IPV4_TCP.size
#: TCP flows kept per capture: a migration has a few connections, a busy capture some
#: thousands; packets of further flows are counted, not indexed (each flow costs a few
#: hundred bytes, so a hostile capture of one-packet flows cannot exhaust memory).
MAX_FLOWS = 1 << 16


class CaptureGap(StreamError):
    """Bytes of a connection that the capture does not hold (``offset``: stream offset)."""

    def __init__(self, message: str, offset: int, connection: str) -> None:
        super().__init__(message, offset)
        self.connection = connection

    def __str__(self) -> str:
        return f"error at offset 0x{self.offset:x} of {self.connection}: {self.message}"


class Flow:
    """One direction of a TCP connection: its segments as file offsets."""

    __slots__ = (
        "key",
        "first_packet",
        "seqs",
        "offsets",
        "lengths",
        "last_raw",
        "ext",
        "syn",
        "syn_ack",
        "fin",
        "rst",
        "next",
        "in_order",
        "short",
        "declared_end",
        "_layout",
    )

    def __init__(self, key: tuple, first_packet: int, seq: int) -> None:
        self.key = key  # (source address, source port, destination address, destination port)
        self.first_packet = first_packet
        self.seqs = array("q")
        self.offsets = array("Q")
        self.lengths = array("I")
        self.last_raw = seq
        self.ext = 0  # unwrapped sequence number of the last segment, relative to the first seen
        self.syn: int | None = None  # unwrapped sequence number of the first data byte after SYN
        self.syn_ack = False
        self.fin: int | None = None
        self.rst = False
        self.next: int | None = None
        self.in_order = True
        self.short = 0  # segments cut short by the snaplen
        self.declared_end: int | None = None
        self._layout: Layout | None = None

    @property
    def start(self) -> int:
        if self.syn is not None:
            return self.syn
        return min(self.seqs) if self.seqs else 0

    @property
    def segments(self) -> int:
        return len(self.seqs)

    def layout(self, data, name: str) -> Layout:
        if self._layout is None:
            self._layout = Layout(self, data, name)
        return self._layout


class Layout:
    """The pieces (stream offset, file offset, length) that make up a flow's stream, in
    order and without overlap, and the fault that ends them (None: complete)."""

    def __init__(self, flow: Flow, data, name: str) -> None:
        self.name = name
        self.closed = flow.fin is not None or flow.rst  # the stream's end is in the capture
        start = flow.start
        end = flow.fin if flow.fin is not None else (flow.declared_end if flow.declared_end is not None else start)
        seqs, offs, lens = flow.seqs, flow.offsets, flow.lengths
        self.fault: CaptureGap | None = None
        if flow.in_order and (not seqs or seqs[0] == start):
            n = len(seqs)
            if n and seqs[n - 1] + lens[n - 1] > end:  # bytes after FIN: not part of the stream
                self._cut(flow, data, start, end)
            else:
                self.starts = array("q", (s - start for s in seqs)) if start else array("q", seqs)
                self.offsets, self.lengths = offs, lens
        else:
            self._cut(flow, data, start, end)
        covered = self.starts[-1] + self.lengths[-1] if self.starts else 0
        self.size = covered
        if self.fault is None and covered < end - start:
            self._gap(flow, covered, end - start - covered)

    def _gap(self, flow: Flow, at: int, missing: int) -> None:
        why = "lost segment"
        if flow.short:
            why = f"{flow.short} packets of this connection were cut short by the capture's snaplen"
        self.fault = CaptureGap(f"capture gap: {missing} bytes missing ({why})", at, self.name)

    def _cut(self, flow: Flow, data, start: int, end: int) -> None:
        """Sort the segments and place each byte once, checking overlaps."""
        seqs, offs, lens = flow.seqs, flow.offsets, flow.lengths
        order = sorted(range(len(seqs)), key=seqs.__getitem__)
        self.starts, self.offsets, self.lengths = array("q"), array("Q"), array("I")
        pos = 0  # stream offset covered so far
        for i in order:
            s, o, n = seqs[i] - start, offs[i], lens[i]
            e = min(s + n, end - start)
            if s < 0:  # before the stream's first byte (a retransmitted SYN's data?)
                o, s = o - s, 0
            if e <= s:
                continue
            if s > pos:
                self._gap(flow, pos, s - pos)
                break
            if s < pos:  # retransmitted or overlapping bytes: they must agree
                upto = min(pos, e)
                have = self.read_range(data, s, upto)
                if bytes(data[o : o + upto - s]) != have:
                    diff = next(k for k in range(len(have)) if have[k] != data[o + k])
                    self.fault = CaptureGap(
                        "capture holds conflicting retransmissions (segments that overlap with different bytes)",
                        s + diff,
                        self.name,
                    )
                    break
                if e <= pos:
                    continue
                o += pos - s
                s = pos
            self.starts.append(s)
            self.offsets.append(o)
            self.lengths.append(e - s)
            pos = e

    def read_range(self, data, lo: int, hi: int) -> bytes:
        out = []
        i = max(0, bisect_right(self.starts, lo) - 1)
        while lo < hi and i < len(self.starts):
            s, o, n = self.starts[i], self.offsets[i], self.lengths[i]
            if lo < s + n:
                a = lo - s
                b = min(n, hi - s)
                out.append(data[o + a : o + b])
                lo = s + b
            i += 1
        return b"".join(out)


def index_flows(capture: CaptureFile) -> tuple[dict[tuple, Flow], int]:
    """Every TCP flow of the capture with its segments (one pass over the file), and
    the number of packets left out because they belong to flows beyond MAX_FLOWS."""
    data = capture.data
    flows: dict[tuple, Flow] = {}
    dropped = 0
    fast = _ETH_IPV4_TCP.unpack_from
    tcp = TCP_HEADER.unpack_from
    size = capture.size
    for number, (link, off, caplen, _wire) in enumerate(capture.packets()):
        end = off + caplen
        if link == ETHERNET and caplen >= _FAST_LEN and data[off + 14] == 0x45 and data[off + 12] == 8:
            etype, _vi, total, frag, proto, src, dst, sport, dport, seq, doff, flags = fast(data, off)
            if etype != 0x0800 or proto != 6 or frag & 0x3FFF or (total and total < 20):
                continue
            tcp_off = off + 34
            ip_end = off + 14 + total if total else end
        else:
            ip = ip_start(link, data, off, caplen)
            if ip < 0:
                continue
            found = tcp_segment(data, ip, end)
            if found is None or found[2] + 14 > end:
                continue
            src, dst, tcp_off, ip_end = found
            sport, dport, seq, doff, flags = tcp(data, tcp_off)
        hlen = (doff >> 4) * 4
        if hlen < 20:
            continue
        payload = tcp_off + hlen
        declared = ip_end - payload
        got = min(ip_end, end, size) - payload
        key = (src, sport, dst, dport)
        flow = flows.get(key)
        if flow is None:
            if len(flows) >= MAX_FLOWS:
                dropped += 1
                continue
            flow = flows[key] = Flow(key, number, seq)
        d = (seq - flow.last_raw) & 0xFFFFFFFF
        if d >= _HALF:
            d -= _WRAP
        flow.last_raw = seq
        pos = flow.ext = flow.ext + d
        if flags & SYN:
            pos += 1  # SYN takes one sequence number
            flow.syn = pos
            if flags & ACK:
                flow.syn_ack = True
        if declared > 0:
            if got < declared:
                flow.short += 1
                flow.in_order = False
            if got > 0:
                if pos != flow.next and flow.next is not None:
                    flow.in_order = False
                flow.seqs.append(pos)
                flow.offsets.append(payload)
                flow.lengths.append(got)
            stop = pos + declared
            if flow.next is None or stop > flow.next:
                flow.next = stop
            if flow.declared_end is None or stop > flow.declared_end:
                flow.declared_end = stop
        else:
            declared = 0
        if flags & FIN:
            flow.fin = pos + declared
        if flags & RST:
            flow.rst = True
    return flows, dropped


class StreamReader:
    """A flow's reassembled bytes as a read-only, seekable file (reads copy out of the
    map; ``chunks`` hands out views)."""

    def __init__(self, data, layout: Layout, truncated: StreamError | None = None, release=None) -> None:
        self._data = data
        self._release = release  # CaptureFile.release: drop the map's pages behind the reader
        self._layout = layout
        self._pos = 0
        # The capture file ended inside a record: the stream may end early because of it
        # (not when its FIN or RST was captured).
        self._truncated = None if layout.closed else truncated

    @property
    def size(self) -> int:
        return self._layout.size

    @property
    def complete(self) -> bool:
        return self._layout.fault is None and self._truncated is None

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self._layout.size
        self._pos = max(0, pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _end(self) -> None:
        if self._layout.fault is not None:
            raise self._layout.fault
        if self._truncated is not None:
            raise self._truncated

    def read(self, n: int = -1) -> bytes:
        lay = self._layout
        if n < 0:
            n = lay.size - self._pos
        lo = self._pos
        hi = min(lo + n, lay.size)
        if lo >= lay.size and n > 0:
            self._end()
            return b""
        out = lay.read_range(self._data, lo, hi)
        self._pos = hi
        if self._release is not None and len(out) >= 1 << 20:  # sequential bulk reads: drop what is behind
            first = lay.offsets[max(0, bisect_right(lay.starts, lo) - 1)]
            last = lay.offsets[max(0, bisect_right(lay.starts, hi) - 1)]
            if last > first:
                self._release(first, last)
        return out

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The stream from the start in chunks of about ``size`` bytes; raises the
        layout's fault after the last byte before it."""
        lay = self._layout
        data = self._data
        starts, offs, lens = lay.starts, lay.offsets, lay.lengths
        part: list = []
        got = 0
        first = offs[0] if len(offs) else 0
        for i in range(len(starts)):
            o = offs[i]
            part.append(data[o : o + lens[i]])
            got += lens[i]
            if got >= size:
                chunk = b"".join(part)
                part, got = [], 0
                if self._release is not None and o > first:
                    self._release(first, o)
                    first = o
                yield chunk
        if part:
            yield b"".join(part)
        self._end()

    def close(self) -> None:
        self._data = memoryview(b"")
