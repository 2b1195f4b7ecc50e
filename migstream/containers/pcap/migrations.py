"""The migrations in a packet capture, and the connections that make up each.

A connection's kind comes from the first bytes its client sent, as the destination
tells them apart (migration.c migration_ioc_process_incoming): QEMU_VM_FILE_MAGIC
("QEVM") starts the main channel, MULTIFD_MAGIC (MultiFDInit_t, multifd.c) a multifd
channel; another connection to the same destination address and port while a
migration runs is its postcopy-preempt channel (no header of its own in QEMU 7.2).  The
destination's return path travels back on the main connection (server to client).
Channels join the main connection with the same destination endpoint that is closest
in the capture (several migrations to one port follow each other).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import BinaryIO

from ...errors import UsageError
from ...record import field
from ...record import record
from ...wire import grammar as g
from .files import AmbiguousCapture
from .files import CaptureFile
from .links import LINKTYPE_NAMES
from .links import SUPPORTED
from .tcp import MAX_FLOWS
from .tcp import Flow
from .tcp import Layout
from .tcp import StreamReader
from .tcp import index_flows

MAIN, MULTIFD, POSTCOPY_PREEMPT, OTHER = "main", "multifd", "postcopy-preempt", "other"


def endpoint(addr: bytes, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@record(frozen=False)
class Connection:
    """A TCP connection: ``forward`` is what the client sent, ``reverse`` the answer."""

    number: int
    forward: Flow
    reverse: Flow | None
    kind: str = OTHER
    multifd_id: int | None = None

    @property
    def client(self) -> str:
        k = self.forward.key
        return endpoint(k[0], k[1])

    @property
    def server(self) -> str:
        k = self.forward.key
        return endpoint(k[2], k[3])

    @property
    def server_key(self) -> tuple:
        return self.forward.key[2:]

    @property
    def first_packet(self) -> int:
        return min(self.forward.first_packet, self.reverse.first_packet if self.reverse else self.forward.first_packet)


@record(frozen=False)
class Migration:
    number: int
    main: Connection
    multifd: list[Connection] = field(default_factory=list)
    preempt: list[Connection] = field(default_factory=list)


class PacketCapture:
    """A capture file with its TCP flows indexed and its migrations found."""

    def __init__(self, path: str, opened: BinaryIO | None = None) -> None:
        self.path = path
        self.file = CaptureFile(path, opened)
        self.flows, self.dropped_packets = index_flows(self.file)
        unknown = self.file.linktypes - SUPPORTED
        self.connections = self._pair()
        self.migrations = self._group()
        if not self.migrations:
            what = f"{len(self.connections)} TCP connections"
            if self.dropped_packets:
                what += f", {self.dropped_packets} packets of flows beyond the first {MAX_FLOWS} not read"
            late = sum(1 for c in self.connections if c.forward.syn is None)
            if late:
                what += f", {late} without their SYN (begun before the capture: the stream's start is missing)"
            if unknown:
                what += f"; link types not read: {', '.join(str(t) for t in sorted(unknown))}"
            fault = f"; {self.file.fault}" if self.file.fault else ""
            raise UsageError(
                f"{path}: no QEMU migration in this {self.file.kind} capture "
                f"({self.file.packet_count} packets, {what}){fault}"
            )

    def _name(self, flow: Flow) -> str:
        k = flow.key
        return f"connection {endpoint(k[0], k[1])} -> {endpoint(k[2], k[3])}"

    def reader(self, flow: Flow) -> StreamReader:
        lay = flow.layout(self.file.data, self._name(flow))
        return StreamReader(self.file.data, lay, self.file.fault, self.file.release)

    def head(self, flow: Flow, n: int = 4) -> bytes:
        lay = flow.layout(self.file.data, self._name(flow))
        return lay.read_range(self.file.data, 0, n)

    def _pair(self) -> list[Connection]:
        seen: set[tuple] = set()
        conns: list[Connection] = []
        for key, flow in sorted(self.flows.items(), key=lambda kv: kv[1].first_packet):
            if key in seen:
                continue
            rkey = (key[2], key[3], key[0], key[1])
            rev = self.flows.get(rkey)
            seen.add(key)
            seen.add(rkey)
            fwd = flow
            # The client sent the SYN without ACK; without a handshake in the capture,
            # the side whose first bytes are a migration magic.
            if rev is not None and (fwd.syn_ack or (fwd.syn is None and rev.syn is None and self._kind(rev) != OTHER)):
                fwd, rev = rev, fwd
            conns.append(Connection(len(conns) + 1, fwd, rev))
        for c in conns:
            c.kind = self._kind(c.forward)
        return conns

    def _kind(self, flow: Flow) -> str:
        head = self.head(flow, 25)
        if len(head) < 4:
            return OTHER
        (magic,) = struct.unpack_from(">I", head)
        if magic == g.QEMU_VM_FILE_MAGIC:
            return MAIN
        if magic == g.MULTIFD_MAGIC:
            return MULTIFD
        return OTHER

    def _group(self) -> list[Migration]:
        mains = [c for c in self.connections if c.kind == MAIN]
        migrations = [Migration(i + 1, c) for i, c in enumerate(mains)]
        for c in self.connections:
            if c.kind == MAIN:
                continue
            near = [m for m in migrations if m.main.server_key == c.server_key]
            if not near:
                continue
            m = min(near, key=lambda m: abs(m.main.first_packet - c.first_packet))
            if c.kind == MULTIFD:
                head = self.head(c.forward, 25)
                c.multifd_id = head[24] if len(head) > 24 else None
                m.multifd.append(c)
            else:
                c.kind = POSTCOPY_PREEMPT
                m.preempt.append(c)
        for m in migrations:
            m.multifd.sort(key=lambda c: (c.multifd_id is None, c.multifd_id, c.number))
        return migrations

    def describe(self) -> dict:
        """The capture and its migrations, for ``info``."""
        return {
            "file": self.path,
            "format": self.file.kind,
            "nanosecond": self.file.nanosecond,
            "link_types": [LINKTYPE_NAMES.get(t, str(t)) for t in sorted(self.file.linktypes)],
            "packets": self.file.packet_count,
            "tcp_connections": len(self.connections),
            "fault": str(self.file.fault) if self.file.fault else None,
            "packets_not_read": self.dropped_packets,
            "migrations": [
                {
                    "number": m.number,
                    "source": m.main.client,
                    "destination": m.main.server,
                    "main_bytes": self._size(m.main.forward),
                    "return_path_bytes": self._size(m.main.reverse) if m.main.reverse else 0,
                    "multifd_channels": [
                        {"id": c.multifd_id, "source": c.client, "bytes": self._size(c.forward)} for c in m.multifd
                    ],
                    "postcopy_preempt": [{"source": c.client, "bytes": self._size(c.forward)} for c in m.preempt],
                    "complete": all(self._whole(c.forward) for c in [m.main, *m.multifd, *m.preempt]),
                }
                for m in self.migrations
            ],
        }

    def _layout(self, flow: Flow) -> Layout:
        return flow.layout(self.file.data, self._name(flow))

    def _whole(self, flow: Flow) -> bool:
        lay = self._layout(flow)
        return lay.fault is None and (lay.closed or self.file.fault is None)

    def _size(self, flow: Flow) -> int:
        return self._layout(flow).size

    def listing(self) -> str:
        """One line per migration (what the ambiguity error and ``info`` show)."""
        lines = []
        for m in self.describe()["migrations"]:
            chans = f", {len(m['multifd_channels'])} multifd channels" if m["multifd_channels"] else ""
            chans += ", postcopy-preempt channel" if m["postcopy_preempt"] else ""
            total = m["main_bytes"] + sum(c["bytes"] for c in m["multifd_channels"] + m["postcopy_preempt"])
            lines.append(
                f"  migration {m['number']}: {m['source']} -> {m['destination']}, {total} bytes{chans}"
                f"{'' if m['complete'] else ' (incomplete)'}"
            )
        return "\n".join(lines)

    def migration(self, number: int | None) -> Migration:
        if number is None:
            if len(self.migrations) == 1:
                return self.migrations[0]
            raise AmbiguousCapture(
                f"{self.path} holds {len(self.migrations)} migrations; pick one with {self.path}#N:\n" + self.listing(),
                self,
            )
        if not 1 <= number <= len(self.migrations):
            raise UsageError(
                f"{self.path} has no migration {number} (it holds {len(self.migrations)}):\n" + self.listing()
            )
        return self.migrations[number - 1]


class CaptureChannel(str):
    """A connection of a capture where a multifd channel file's path is expected: the
    string names it in messages, ``open_reader`` reads its reassembled bytes
    (containers/multifd.py ChannelInput)."""

    capture: PacketCapture
    flow: Flow

    def __new__(cls, capture: PacketCapture, conn: Connection) -> CaptureChannel:
        self = super().__new__(cls, f"{capture.path}:multifd{conn.multifd_id}:{conn.client}")
        self.capture = capture
        self.flow = conn.forward
        return self

    def open_reader(self) -> StreamReader:
        return self.capture.reader(self.flow)
