"""Where migration connections come from: QEMU-style URIs (``unix:``/``tcp:``), the
listening socket, socket tuning, and telling a connection's kind from its first bytes."""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from dataclasses import dataclass
from typing import cast

from ..containers.capturedir import MAIN
from ..containers.capturedir import MULTIFD
from ..containers.capturedir import POSTCOPY_PREEMPT
from ..errors import UsageError

#: First four bytes of a main channel (savevm.h QEMU_VM_FILE_MAGIC, "QEVM").
QEMU_VM_FILE_MAGIC = 0x5145564D
#: First four bytes of a multifd channel (multifd.h MULTIFD_MAGIC, MultiFDInit_t).
MULTIFD_MAGIC = 0x11223344

UNKNOWN, EMPTY = "unknown", "empty"  # beside MAIN, MULTIFD, POSTCOPY_PREEMPT

# --- addresses ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A socket address from a QEMU-style URI: ``unix:/path`` or ``tcp:HOST:PORT``."""

    family: int
    address: str | tuple[str, int]

    @property
    def uri(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.address}"
        host, port = cast(tuple[str, int], self.address)
        return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def parse_uri(uri: str) -> Endpoint:
    """``unix:/path``, ``tcp:HOST:PORT``, ``tcp:[v6]:PORT``; ``tcp::PORT`` and ``tcp:PORT``
    mean loopback (127.0.0.1), never all interfaces."""
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise UsageError(f"bad URI {uri!r}: expected unix:/path or tcp:HOST:PORT")
    if scheme == "unix":
        return Endpoint(socket.AF_UNIX, rest)
    if scheme == "tcp":
        if rest.startswith("["):
            host, _, port_s = rest[1:].partition("]:")
        elif ":" in rest:
            host, _, port_s = rest.rpartition(":")
        else:
            host, port_s = "", rest
        try:
            port = int(port_s)
        except ValueError:
            raise UsageError(f"bad URI {uri!r}: port {port_s!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise UsageError(f"bad URI {uri!r}: port {port} out of range")
        host = host or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return Endpoint(family, (host, port))
    raise UsageError(f"bad URI {uri!r}: only unix: and tcp: are supported")


def listen_on(ep: Endpoint) -> socket.socket:
    sock = socket.socket(ep.family, socket.SOCK_STREAM)
    try:
        if ep.family == socket.AF_UNIX:
            path = ep.address
            assert isinstance(path, str)
            if os.path.exists(path):
                if not stat.S_ISSOCK(os.stat(path).st_mode):
                    raise UsageError(f"{path} exists and is not a socket")
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                    raise UsageError(f"{path}: another program is listening there")
                except ConnectionRefusedError:
                    os.unlink(path)  # a stale socket left by a dead server
                except FileNotFoundError:
                    pass
                finally:
                    probe.close()
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(ep.address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {ep.uri}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


SOCKET_BUFFER = 4 << 20


def tune(sock: socket.socket) -> None:
    # Deep socket buffers let the tap move large chunks per wake-up and let each side
    # run ahead while the other is not scheduled (the kernel caps them at wmem_max).
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Return-path messages (postcopy page requests) are small and latency-bound.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- channel identification ----------------------------------------------------------


def identify_channel(head: bytes, main_seen: bool) -> str:
    """The kind of a migration channel from its first 4 bytes.

    QEMU_VM_FILE_MAGIC starts the main channel (savevm.c qemu_savevm_state_header),
    MULTIFD_MAGIC a multifd channel (multifd.c MultiFDInit_t).  A postcopy-preempt
    channel has no header in QEMU 7.2: the destination knows it only as a second
    connection without multifd (migration.c migration_ioc_process_incoming), and its
    first bytes are a RAM page header.  So: anything else after a main channel is
    taken for postcopy-preempt.
    """
    if len(head) < 4:
        return EMPTY if not head else UNKNOWN
    (magic,) = struct.unpack_from(">I", head)
    if magic == QEMU_VM_FILE_MAGIC:
        return MAIN
    if magic == MULTIFD_MAGIC:
        return MULTIFD
    return POSTCOPY_PREEMPT if main_seen else UNKNOWN


def peek_head(sock: socket.socket, n: int = 4, patience: float = 1.0) -> bytes:
    """The first n bytes of a connection, left in the socket (fewer at EOF)."""
    head = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
    deadline = time.monotonic() + patience
    while 0 < len(head) < n and time.monotonic() < deadline:
        # A split write, or EOF after a few bytes: a peek cannot tell, so wait a little.
        time.sleep(0.01)
        head = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
    return head
