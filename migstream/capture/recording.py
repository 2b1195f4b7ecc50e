"""Recording a connection to disk without stalling it: per-direction ``Recorder``
writer threads, the ``RecordingFile`` they append to, and the ``BacklogBudget`` of
buffers shared by a session (see sessions.py for what happens when it runs out)."""

from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import mmap
import os
import stat
import threading
from collections.abc import Callable

from ..wire.limits import DEFAULT_MAX_BACKLOG

CHUNK = 1 << 20  # recording buffer size
MIN_RECV = 256 << 10  # a buffer with less room than this goes to the writer

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
            self._stage_ref: ctypes.c_char | None = ctypes.c_char.from_buffer(self._stage)
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
        view = self._view
        assert view is not None  # staged while direct
        done = 0
        while done < len(data):
            take = min(len(data) - done, self.STAGE - self.fill)
            if address is not None:
                ctypes.memmove(self._stage_address + self.fill, address + done, take)
            else:
                view[self.fill : self.fill + take] = data[done : done + take]
            self.fill += take
            done += take
            if self.fill == self.STAGE:
                self.flush()

    def flush(self) -> None:
        """Write every whole 4 KiB block staged; the partial one stays staged."""
        if not self.direct:
            return
        view = self._view
        assert view is not None  # staged while direct
        n = self.fill - self.fill % self.ALIGN
        off = 0
        while off < n:
            off += os.write(self.fd, view[off:n])
        self.written += n
        tail = self.fill - n
        if n and tail:
            view[0:tail] = view[n : self.fill]
        self.fill = tail

    def close(self) -> None:
        if self.direct and self._view is not None:
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
