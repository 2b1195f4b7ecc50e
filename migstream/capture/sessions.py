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

import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from dataclasses import field

from ..containers.capturedir import CAPTURE_JSON
from ..containers.capturedir import MAIN
from ..errors import UsageError
from ..wire.limits import DEFAULT_MAX_BACKLOG
from .endpoints import Endpoint
from .endpoints import identify_channel
from .endpoints import listen_on
from .endpoints import parse_uri
from .endpoints import peek_head
from .endpoints import tune
from .recording import CHUNK
from .recording import MIN_RECV
from .recording import BacklogBudget
from .recording import Recorder

CAPTURE_SCHEMA = 1


# --- channels ------------------------------------------------------------------------


@dataclass
class RecordedConnection:
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
        d: dict[str, object] = {
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
        self.channels: list[RecordedConnection] = []
        self.warnings: list[str] = []
        self.started = time.time()
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._manifest_lock = threading.Lock()
        self._finished = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._listener = listen_on(self.listen_endpoint)
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

    def main_channel(self) -> RecordedConnection | None:
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
            tune(conn)
            with self._lock:
                ch = RecordedConnection(index=len(self.channels))
                self.channels.append(ch)
            try:
                self._open_channel(ch, conn)
            except OSError as exc:
                ch.error = str(exc)
                ch.end = time.time()
                self._warn(f"channel {ch.index}: {exc}")
                conn.close()
                self._check_finished()

    def _open_channel(self, ch: RecordedConnection, conn: socket.socket) -> None:
        raise NotImplementedError

    def _spawn(self, target, *args, name: str) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()  # started before it is listed: stop() may join anything on the list
        self._threads.append(t)

    def _identify(self, ch: RecordedConnection, sock: socket.socket) -> str:
        """Tell the connection's kind and name its file(s); returns the file's name."""
        try:
            head = peek_head(sock)
        except OSError:
            head = b""
        with self._lock:
            main_seen = any(c.kind == MAIN for c in self.channels if c is not ch)
            ch.kind = identify_channel(head, main_seen)
            ch.first_bytes = head.hex()
            ch.file = file = f"ch{ch.index}-{ch.kind}.mig"
            ch.return_file = f"ch{ch.index}-{ch.kind}.return" if self.tool == "tap" else None
        ch.identified.set()
        try:
            self.write_manifest()
        except OSError as exc:
            self._warn(f"cannot write {CAPTURE_JSON}: {exc}")
        return file

    def _pump(
        self,
        ch: RecordedConnection,
        src: socket.socket,
        dst: socket.socket | None,
        rec: Recorder | None,
        returning: bool,
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

    def _direction_done(self, ch: RecordedConnection) -> None:
        with self._lock:
            ch.open_directions -= 1
            last = ch.open_directions == 0
        if last:
            self._close_channel(ch)
            ch.end = time.time()
            self._check_finished()

    def _close_channel(self, ch: RecordedConnection) -> None:
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

    def _open_channel(self, ch: RecordedConnection, conn: socket.socket) -> None:
        self._socks[ch.index] = conn
        ch.open_directions = 1
        self._spawn(self._run_channel, ch, conn, name=f"migstream-capture ch{ch.index}")

    def _run_channel(self, ch: RecordedConnection, conn: socket.socket) -> None:
        file = self._identify(ch, conn)
        ch.recorder = Recorder(
            lambda: os.path.join(self.directory, file),
            budget=self.budget,
            lossless=True,
            on_warning=self._warn,
            label=f"channel {ch.index} ({ch.kind})",
        )
        self._pump(ch, conn, None, ch.recorder, returning=False)

    def _close_channel(self, ch: RecordedConnection) -> None:
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

    def _open_channel(self, ch: RecordedConnection, conn: socket.socket) -> None:
        dst = socket.socket(self.forward_endpoint.family, socket.SOCK_STREAM)
        try:
            dst.connect(self.forward_endpoint.address)
        except OSError as exc:
            dst.close()
            raise OSError(exc.errno, f"cannot connect to {self.forward_uri}: {exc.strerror}") from exc
        tune(dst)
        self._pairs[ch.index] = (conn, dst)
        ch.open_directions = 2
        label = f"channel {ch.index}"
        ch.return_recorder = Recorder(
            lambda: self._return_path(ch), budget=self.budget, on_warning=self._warn, label=f"{label} return path"
        )
        self._spawn(self._run_forward, ch, conn, dst, name=f"migstream-tap ch{ch.index}")
        self._spawn(self._pump, ch, dst, conn, ch.return_recorder, True, name=f"migstream-tap ch{ch.index} rp")

    def _return_path(self, ch: RecordedConnection) -> str:
        ch.identified.wait()
        assert ch.return_file is not None  # a tap names it in _identify
        return os.path.join(self.directory, ch.return_file)

    def _run_forward(self, ch: RecordedConnection, conn: socket.socket, dst: socket.socket) -> None:
        file = self._identify(ch, conn)
        ch.recorder = Recorder(
            lambda: os.path.join(self.directory, file),
            budget=self.budget,
            on_warning=self._warn,
            label=f"channel {ch.index} ({ch.kind})",
        )
        self._pump(ch, conn, dst, ch.recorder, returning=False)

    def _close_channel(self, ch: RecordedConnection) -> None:
        for sock in self._pairs.pop(ch.index, ()):
            sock.close()

    def _shutdown_open(self) -> None:
        for pair in list(self._pairs.values()):
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
