"""Record live migrations as they happen: a capture destination and a forwarding tap.

``CaptureSession`` plays the migration destination: it accepts the main channel and
every multifd / postcopy-preempt channel and writes each to its own file.
``TapSession`` sits between a source and a destination QEMU: every accepted channel
is connected to the real destination at once (QEMU 7.2 tells the main channel by
connection order) and forwarded byte for byte in both directions, the return path
(destination -> source) included; both directions are recorded.  Both write
``capture.json`` (see ``CAPTURE_SCHEMA``) beside the channel files.

Threads, not asyncio: each direction of each channel is one thread doing blocking
``recv_into`` / ``sendall`` on 1 MiB buffers, which release the GIL, so the copy
loop runs at socket speed with one Python call per chunk (asyncio adds an event-loop
round trip per chunk and cannot write files without threads anyway).

Recording never stalls or corrupts forwarding (tap).  Received chunks are forwarded
first, then handed (the same buffer, no copy) to a writer thread.  The buffers in
flight are bounded (``max_backlog`` bytes for the whole session, shared by every
channel and direction, allocated only while the disk is behind): when it falls that
far behind, that channel's recording stops at a chunk boundary, the file keeps the
valid prefix, ``capture.json`` says ``"recording": "stopped"`` with the offset and
the reason, a warning is reported, and forwarding goes on untouched.  A write error
(disk full) is handled the same way.  The capture destination, which forwards
nothing, instead waits for the disk (back-pressure to the source).

No terminal code here: front ends read ``session.channels`` / ``warnings`` and the
``LiveDecoder`` numbers.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import json
import mmap
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..containers.capturedir import CAPTURE_JSON, MAIN, MULTIFD, POSTCOPY_PREEMPT
from ..errors import UsageError
from ..wire.limits import DEFAULT_MAX_BACKLOG

#: First four bytes of a main channel (savevm.h QEMU_VM_FILE_MAGIC, "QEVM").
QEMU_VM_FILE_MAGIC = 0x5145564D
#: First four bytes of a multifd channel (multifd.h MULTIFD_MAGIC, MultiFDInit_t).
MULTIFD_MAGIC = 0x11223344

UNKNOWN, EMPTY = "unknown", "empty"  # beside MAIN, MULTIFD, POSTCOPY_PREEMPT

CHUNK = 1 << 20  # recording buffer size
MIN_RECV = 256 << 10  # a buffer with less room than this goes to the writer
CAPTURE_SCHEMA = 1


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
        host, port = self.address  # type: ignore[misc]
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


def _listen(ep: Endpoint) -> socket.socket:
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


def _tune(sock: socket.socket) -> None:
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


def _peek_head(sock: socket.socket, n: int = 4, patience: float = 1.0) -> bytes:
    """The first n bytes of a connection, left in the socket (fewer at EOF)."""
    head = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
    deadline = time.monotonic() + patience
    while 0 < len(head) < n and time.monotonic() < deadline:
        # A split write, or EOF after a few bytes: a peek cannot tell, so wait a little.
        time.sleep(0.01)
        head = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
    return head


# --- recording -------------------------------------------------------------------------


class BacklogBudget:
    """How many CHUNK buffers all recorders of a session may hold at once (shared, so
    that one busy channel can use what idle ones do not)."""

    def __init__(self, max_bytes: int) -> None:
        self.limit = max(2, max_bytes // CHUNK)
        self.in_use = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.in_use >= self.limit:
                return False
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
            return True

    def give(self) -> None:
        with self._lock:
            self.in_use -= 1


class Recorder:
    """Writes one direction of one channel to a file from a writer thread.

    The forwarding thread takes a buffer (``take_buffer``), fills it, forwards it, and
    hands it over (``submit``); the writer writes it and returns it to the pool.  At most
    the session's budget allows.  With ``lossless`` (capture destination),
    ``take_buffer`` waits for the disk; otherwise it returns None when the backlog is
    full and the recording is abandoned.
    """

    KEEP_IDLE = 64  # free buffers kept for reuse (re-faulting fresh 1 MiB buffers costs sys time)

    def __init__(
        self,
        path_fn: Callable[[], str],
        *,
        budget: BacklogBudget | None = None,
        lossless: bool = False,
        on_warning: Callable[[str], None] | None = None,
        label: str = "",
    ) -> None:
        self._path_fn = path_fn
        self.path: str | None = None
        self.label = label
        self._budget = budget or BacklogBudget(DEFAULT_MAX_BACKLOG)
        self._addresses: dict[int, tuple[ctypes.c_char, int]] = {}
        self._free: collections.deque[bytearray] = collections.deque()
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._lossless = lossless
        self._on_warning = on_warning
        self.active = True  # False once the recording stopped (backlog or write error)
        self.stopped: dict | None = None  # {offset, reason}
        self.submitted = 0  # bytes handed over
        self.written = 0  # bytes on disk
        self._closed = False
        self._write_ok = True
        self._thread = threading.Thread(target=self._run, name=f"migstream-writer {label}", daemon=True)
        self._thread.start()

    def _new_buffer(self) -> bytearray:
        buf = bytearray(CHUNK)
        ref = ctypes.c_char.from_buffer(buf)  # the writer copies from it without the GIL
        self._addresses[id(buf)] = (ref, ctypes.addressof(ref))
        return buf

    def _drop_buffer(self, buf: bytearray) -> None:
        self._addresses.pop(id(buf), None)
        self._budget.give()

    def take_buffer(self) -> bytearray | None:
        try:
            return self._free.pop()
        except IndexError:
            pass
        if self._budget.take():
            return self._new_buffer()
        if not self._lossless:
            return None
        with self._cond:
            while self.active:
                if self._free:
                    return self._free.pop()
                if self._budget.take():
                    return self._new_buffer()
                self._cond.wait(0.05)
        return None

    def give_back(self, buf: bytearray) -> None:
        """A buffer taken but not used."""
        self._free.append(buf)

    @property
    def idle(self) -> bool:
        """Nothing waits for the writer."""
        return not self._queue

    def submit(self, buf: bytearray, n: int) -> None:
        self.submitted += n
        with self._cond:
            self._queue.append((buf, n))
            self._cond.notify_all()

    def abandon(self, reason: str) -> None:
        """Stop recording at the current offset (everything submitted is still written)."""
        if self.stopped is None:
            self.stopped = {"offset": self.submitted, "reason": reason}
            self.active = False
            if self._on_warning:
                self._on_warning(
                    f"{self.label}: recording stopped at byte {self.submitted}: {reason}; forwarding continues"
                )

    def close(self) -> None:
        """No more data: flush and wait for the writer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        f: RecordingFile | None = None
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    if not self._queue:
                        break
                    buf, n = self._queue.popleft()
                    idle = not self._queue
                if self._write_ok:
                    try:
                        if f is None:
                            self.path = self._path_fn()
                            f = RecordingFile(self.path)
                        f.append(memoryview(buf)[:n], self._addresses[id(buf)][1])
                        if idle:
                            f.flush()  # keep the file current for readers that follow it
                        self.written = f.written
                    except OSError as exc:
                        self._write_failed(f, exc)
                if len(self._free) < self.KEEP_IDLE:
                    self._free.append(buf)
                else:
                    self._drop_buffer(buf)
                with self._cond:
                    self._cond.notify_all()
            if f is not None and self._write_ok:
                try:
                    f.close()
                except OSError as exc:
                    self._write_failed(f, exc)
                self.written = f.written
        finally:
            while self._free:
                self._drop_buffer(self._free.pop())
            if f is not None:
                f.abort()

    def _write_failed(self, f: RecordingFile | None, exc: OSError) -> None:
        # The file stays a valid prefix: the recording ends where the disk stopped.
        self._write_ok = False
        self.active = False
        self.written = f.written if f is not None else 0
        if self.stopped is None:
            self.stopped = {"offset": self.written, "reason": f"write error: {exc}"}
            if self._on_warning:
                self._on_warning(
                    f"{self.label}: recording stopped at byte {self.written}: write error: {exc}; forwarding continues"
                )
        else:
            self.stopped["offset"] = min(self.stopped["offset"], self.written)


class RecordingFile:
    """An append-only recording file written with O_DIRECT where the filesystem allows.

    Buffered writes of a whole migration cost the host about a second of CPU per GiB
    here (page-cache copies and writeback, competing with both QEMUs); O_DIRECT writes
    DMA from an aligned staging buffer and cost a tenth of that.  Data is staged in an
    8 MiB page-aligned buffer, written in multiples of 4 KiB, and the last partial
    block is written without O_DIRECT at close.  ``written`` = bytes in the file.
    """

    STAGE = 8 << 20
    ALIGN = 4096

    def __init__(self, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.direct = False
        self.written = 0
        self.fill = 0
        self.fd = -1
        direct = getattr(os, "O_DIRECT", 0)
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except FileNotFoundError:
            regular = True  # created here: a file
        # Only a regular file is tried with O_DIRECT: a FIFO's open() meets its reader
        # before O_DIRECT is refused, and that reader would see the writer come and go
        # (end of file) while the plain open() then waits for a reader forever.
        if direct and regular:
            try:
                self.fd = os.open(path, flags | direct, 0o644)
                self.direct = True
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # tmpfs, FIFOs, devices: not supported
                    raise
        if self.fd < 0:
            self.fd = os.open(path, flags, 0o644)
        if self.direct:
            self._stage: mmap.mmap | None = mmap.mmap(-1, self.STAGE)
            self._view: memoryview | None = memoryview(self._stage)
            self._stage_ref = ctypes.c_char.from_buffer(self._stage)
            self._stage_address = ctypes.addressof(self._stage_ref)

    def append(self, data: memoryview, address: int | None = None) -> None:
        """Add bytes; ``address`` is where ``data`` lives in memory, if known, so the
        copy into the staging buffer runs without the GIL (ctypes.memmove) and does not
        hold up the forwarding threads."""
        if not self.direct:
            while data:
                k = os.write(self.fd, data)
                data = data[k:]
                self.written += k
            return
        done = 0
        while done < len(data):
            take = min(len(data) - done, self.STAGE - self.fill)
            if address is not None:
                ctypes.memmove(self._stage_address + self.fill, address + done, take)
            else:
                self._view[self.fill : self.fill + take] = data[done : done + take]
            self.fill += take
            done += take
            if self.fill == self.STAGE:
                self.flush()

    def flush(self) -> None:
        """Write every whole 4 KiB block staged; the partial one stays staged."""
        if not self.direct:
            return
        n = self.fill - self.fill % self.ALIGN
        off = 0
        while off < n:
            off += os.write(self.fd, self._view[off:n])
        self.written += n
        tail = self.fill - n
        if n and tail:
            self._view[0:tail] = self._view[n : self.fill]
        self.fill = tail

    def close(self) -> None:
        if self.direct:
            self.flush()
            if self.fill:
                fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
                fcntl.fcntl(self.fd, fcntl.F_SETFL, fl & ~os.O_DIRECT)
                data = self._view[: self.fill]
                while data:
                    k = os.write(self.fd, data)
                    data = data[k:]
                    self.written += k
                self.fill = 0
        self.abort()

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        # The staging map goes with its last reference (slices may still be alive here).
        self._view = self._stage = self._stage_ref = None


# --- channels ------------------------------------------------------------------------


@dataclass
class Channel:
    """One accepted connection: its kind, files and counters (the ``capture.json`` entry)."""

    index: int  # order accepted, from 0
    kind: str | None = None
    file: str | None = None  # source -> destination bytes (relative to the capture dir)
    return_file: str | None = None  # destination -> source bytes (tap only)
    bytes: int = 0  # source -> destination
    return_bytes: int = 0
    start: float = field(default_factory=time.time)
    end: float | None = None
    first_bytes: str = ""
    error: str | None = None
    identified: threading.Event = field(default_factory=threading.Event, repr=False)
    recorder: Recorder | None = field(default=None, repr=False)
    return_recorder: Recorder | None = field(default=None, repr=False)
    open_directions: int = 0
    resets: list = field(default_factory=list)  # connections reset by a peer (not errors)

    @property
    def closed(self) -> bool:
        return self.end is not None

    def as_dict(self) -> dict:
        d = {
            "index": self.index,
            "order": self.index,
            "kind": self.kind,
            "file": self.file,
            "bytes": self.bytes,
            "start": self.start,
            "end": self.end,
            "first_bytes": self.first_bytes,
        }
        rec = self.recorder
        d["recorded_bytes"] = rec.written if rec else 0
        d["recording"] = "stopped" if rec and rec.stopped else ("complete" if self.closed else "running")
        if rec and rec.stopped:
            d["recording_stopped"] = dict(rec.stopped)
        if self.return_file is not None or self.return_bytes:
            rr = self.return_recorder
            d["return_file"] = self.return_file if rr and rr.written else None
            d["return_bytes"] = self.return_bytes
            if rr and rr.stopped:
                d["return_recording_stopped"] = dict(rr.stopped)
        if self.resets:
            d["resets"] = list(self.resets)
        if self.error:
            d["error"] = self.error
        return d


class _Session:
    """What capture and tap share: the listener, the accept loop, channels, capture.json."""

    tool = "capture"

    def __init__(self, listen: str, directory: str, *, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self.listen_endpoint = parse_uri(listen)
        self.directory = os.path.abspath(directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {directory}: {exc.strerror}") from exc
        self.max_backlog = max_backlog
        self.budget = BacklogBudget(max_backlog)
        self.channels: list[Channel] = []
        self.warnings: list[str] = []
        self.started = time.time()
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._manifest_lock = threading.Lock()
        self._finished = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._listener = _listen(self.listen_endpoint)
        if self.listen_endpoint.family != socket.AF_UNIX:
            host, port = self._listener.getsockname()[:2]
            self.listen_endpoint = Endpoint(self.listen_endpoint.family, (host, port))
        self._accept_thread = threading.Thread(target=self._accept_loop, name="migstream-accept", daemon=True)

    # public ---------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """Where QEMU should migrate to (the actual port for ``tcp:...:0``)."""
        return self.listen_endpoint.uri

    def start(self) -> _Session:
        self._accept_thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once the migration is over: channels were accepted, a main channel among
        them, and every one of them is closed."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def total_bytes(self) -> int:
        return sum(c.bytes + c.return_bytes for c in self.channels)

    def main_channel(self) -> Channel | None:
        for c in self.channels:
            if c.kind == MAIN:
                return c
        return None

    def stop(self) -> dict:
        """Stop listening, cut every open channel, flush the files, write capture.json."""
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        if self.listen_endpoint.family == socket.AF_UNIX:
            try:
                os.unlink(self.listen_endpoint.address)  # type: ignore[arg-type]
            except OSError:
                pass
        if not self._finished.is_set():
            self._shutdown_open()
        # The accept loop spawns the channel threads: once it has ended, the list is final.
        self._accept_thread.join(timeout=5)
        for t in list(self._threads):
            t.join(timeout=10)
        for c in self.channels:
            for rec in (c.recorder, c.return_recorder):
                if rec is not None:
                    rec.close()
        if self.ended is None:
            self.ended = time.time()
        return self.write_manifest()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def manifest(self) -> dict:
        with self._lock:
            channels = [c.as_dict() for c in self.channels]
        return {
            "schema": CAPTURE_SCHEMA,
            "tool": f"migstream {self.tool}",
            "listen": self.uri,
            "forward": getattr(self, "forward_uri", None),
            "started": self.started,
            "ended": self.ended,
            "complete": self._finished.is_set()
            and all(ch["recording"] == "complete" and not ch.get("return_recording_stopped") for ch in channels),
            "main": next((ch["file"] for ch in channels if ch["kind"] == MAIN), None),
            "channels": channels,
            "warnings": list(self.warnings),
        }

    def write_manifest(self) -> dict:
        """Write capture.json atomically (readers never see half a file)."""
        with self._manifest_lock:
            doc = self.manifest()
            path = os.path.join(self.directory, CAPTURE_JSON)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
            return doc

    # internals ------------------------------------------------------------------------

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            _tune(conn)
            with self._lock:
                ch = Channel(index=len(self.channels))
                self.channels.append(ch)
            try:
                self._open_channel(ch, conn)
            except OSError as exc:
                ch.error = str(exc)
                ch.end = time.time()
                self._warn(f"channel {ch.index}: {exc}")
                conn.close()
                self._check_finished()

    def _open_channel(self, ch: Channel, conn: socket.socket) -> None:
        raise NotImplementedError

    def _spawn(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()  # started before it is listed: stop() may join anything on the list
        self._threads.append(t)

    def _identify(self, ch: Channel, sock: socket.socket) -> None:
        try:
            head = _peek_head(sock)
        except OSError:
            head = b""
        with self._lock:
            main_seen = any(c.kind == MAIN for c in self.channels if c is not ch)
            ch.kind = identify_channel(head, main_seen)
            ch.first_bytes = head.hex()
            ch.file = f"ch{ch.index}-{ch.kind}.mig"
            ch.return_file = f"ch{ch.index}-{ch.kind}.return" if self.tool == "tap" else None
        ch.identified.set()
        try:
            self.write_manifest()
        except OSError as exc:
            self._warn(f"cannot write {CAPTURE_JSON}: {exc}")

    def _pump(
        self, ch: Channel, src: socket.socket, dst: socket.socket | None, rec: Recorder | None, returning: bool
    ) -> None:
        """Copy src -> dst (if any) and into rec until src ends; then half-close dst.

        Chunks are forwarded as soon as they arrive.  A recording buffer is handed to
        the writer when the writer is idle, or when it is nearly full: while the disk
        is behind, buffers fill up, so the backlog budget counts real bytes.
        """
        scratch: bytearray | None = None
        recv_into = src.recv_into
        sendall = dst.sendall if dst is not None else None
        total = 0
        buf: bytearray | None = None
        fill = 0
        try:
            while True:
                if buf is None:
                    fill = 0
                    buf = rec.take_buffer() if rec is not None and rec.active else None
                    if buf is None:
                        if rec is not None and rec.active:
                            rec.abandon(f"the disk fell {self.max_backlog >> 20} MiB behind")
                        if scratch is None:
                            scratch = bytearray(CHUNK)
                        buf = scratch
                view = memoryview(buf)
                n = recv_into(view[fill:])
                if not n:
                    break
                if sendall is not None:
                    sendall(view[fill : fill + n])
                fill += n
                total += n
                if returning:
                    ch.return_bytes = total
                else:
                    ch.bytes = total
                if buf is scratch:
                    buf = None
                elif CHUNK - fill < MIN_RECV or rec.idle:  # type: ignore[union-attr]
                    rec.submit(buf, fill)  # type: ignore[union-attr]
                    buf = None
        except OSError as exc:
            where = "return path" if returning else "channel"
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                # A peer closed with data in flight (QEMU does so at the end of some
                # migrations): a direct connection would see the same; pass it on.
                ch.resets.append(f"{where}: {exc.strerror}")
            elif not self._stopping and ch.error is None:
                ch.error = f"{where}: {exc}"
        finally:
            if buf is not None and buf is not scratch:
                if fill:
                    rec.submit(buf, fill)  # type: ignore[union-attr]
                else:
                    rec.give_back(buf)  # type: ignore[union-attr]
            if dst is not None:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self._direction_done(ch)

    def _direction_done(self, ch: Channel) -> None:
        with self._lock:
            ch.open_directions -= 1
            last = ch.open_directions == 0
        if last:
            self._close_channel(ch)
            ch.end = time.time()
            self._check_finished()

    def _close_channel(self, ch: Channel) -> None:
        pass

    def _shutdown_open(self) -> None:
        pass

    def _check_finished(self) -> None:
        with self._lock:
            done = self.channels and all(c.closed for c in self.channels) and any(c.kind == MAIN for c in self.channels)
        if done and not self._finished.is_set():
            self.ended = time.time()
            self._finished.set()


class CaptureSession(_Session):
    """A migration destination that records every channel and answers nothing.

    ``CaptureSession("unix:/tmp/mig.sock", "DIR").start()``, point QEMU's ``migrate``
    at ``session.uri``, ``session.wait()``, ``session.stop()``.  Migrations that need
    a return path (postcopy, the ``return-path`` capability) cannot finish against it:
    use a tap in front of a real destination for those.
    """

    tool = "capture"

    def __init__(self, listen: str, directory: str, **kw) -> None:
        super().__init__(listen, directory, **kw)
        self._socks: dict[int, socket.socket] = {}

    def _open_channel(self, ch: Channel, conn: socket.socket) -> None:
        self._socks[ch.index] = conn
        ch.open_directions = 1
        self._spawn(self._run_channel, ch, conn, name=f"migstream-capture ch{ch.index}")

    def _run_channel(self, ch: Channel, conn: socket.socket) -> None:
        self._identify(ch, conn)
        ch.recorder = Recorder(
            lambda: os.path.join(self.directory, ch.file),
            budget=self.budget,
            lossless=True,
            on_warning=self._warn,
            label=f"channel {ch.index} ({ch.kind})",
        )
        self._pump(ch, conn, None, ch.recorder, returning=False)

    def _close_channel(self, ch: Channel) -> None:
        sock = self._socks.pop(ch.index, None)
        if sock is not None:
            sock.close()

    def _shutdown_open(self) -> None:
        for sock in list(self._socks.values()):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TapSession(_Session):
    """A transparent proxy between a migration source and destination that records
    both directions of every channel.

    Each accepted connection is connected to ``forward`` before the next one is
    accepted, so the destination sees the channels in the source's order.
    """

    tool = "tap"

    def __init__(self, listen: str, forward: str, directory: str, **kw) -> None:
        self.forward_endpoint = parse_uri(forward)
        self.forward_uri = self.forward_endpoint.uri
        super().__init__(listen, directory, **kw)
        self._pairs: dict[int, tuple[socket.socket, socket.socket]] = {}

    def _open_channel(self, ch: Channel, conn: socket.socket) -> None:
        dst = socket.socket(self.forward_endpoint.family, socket.SOCK_STREAM)
        try:
            dst.connect(self.forward_endpoint.address)
        except OSError as exc:
            dst.close()
            raise OSError(exc.errno, f"cannot connect to {self.forward_uri}: {exc.strerror}") from exc
        _tune(dst)
        self._pairs[ch.index] = (conn, dst)
        ch.open_directions = 2
        label = f"channel {ch.index}"
        ch.return_recorder = Recorder(
            lambda: self._return_path(ch), budget=self.budget, on_warning=self._warn, label=f"{label} return path"
        )
        self._spawn(self._run_forward, ch, conn, dst, name=f"migstream-tap ch{ch.index}")
        self._spawn(self._pump, ch, dst, conn, ch.return_recorder, True, name=f"migstream-tap ch{ch.index} rp")

    def _return_path(self, ch: Channel) -> str:
        ch.identified.wait()
        return os.path.join(self.directory, ch.return_file)

    def _run_forward(self, ch: Channel, conn: socket.socket, dst: socket.socket) -> None:
        self._identify(ch, conn)
        ch.recorder = Recorder(
            lambda: os.path.join(self.directory, ch.file),
            budget=self.budget,
            on_warning=self._warn,
            label=f"channel {ch.index} ({ch.kind})",
        )
        self._pump(ch, conn, dst, ch.recorder, returning=False)

    def _close_channel(self, ch: Channel) -> None:
        for sock in self._pairs.pop(ch.index, ()):
            sock.close()

    def _shutdown_open(self) -> None:
        for pair in list(self._pairs.values()):
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
