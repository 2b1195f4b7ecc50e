"""Positional writes to block files on a background thread.

Copying pages into the page cache is the kernel's work and releases the GIL, so
a second thread doing the ``pwritev`` calls lets that copy overlap with decoding
on another core.  Writes are queued in batches (one batch per PageRun, or every
``_BATCH_WRITES`` single pages) and run strictly in order; the queue is short, so
at most a few batches of stream views are held at once.  An OSError on the
thread is re-raised in the caller at the next ``submit``, ``wait`` or ``close``.
"""

from __future__ import annotations

import os
import queue
import threading

IOV_MAX = 1024  # Linux limit on iovecs per pwritev
_BATCH_WRITES = 256  # single writes gathered before they are handed over
_QUEUE_DEPTH = 2  # batches in flight (each holds views of up to one 16 MiB window)


class BlockWriter:
    def __init__(self) -> None:
        self._batch: list[tuple[int, int, list]] = []
        self._queue: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    def add(self, fd: int, offset: int, buffers: list) -> None:
        """Write ``buffers`` back to back at ``offset`` of ``fd`` (later, in order)."""
        self._batch.append((fd, offset, buffers))
        if len(self._batch) >= _BATCH_WRITES:
            self.submit()

    def submit(self) -> None:
        """Hand the gathered writes to the thread."""
        self._raise()
        if not self._batch:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="migstream-writer", daemon=True)
            self._thread.start()
        self._queue.put(self._batch)
        self._batch = []

    def wait(self) -> None:
        """Return once every write added so far is done."""
        self.submit()
        if self._thread is not None:
            self._queue.join()
        self._raise()

    def close(self) -> None:
        self.wait()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None:
                    for fd, offset, buffers in batch:
                        write_all(fd, offset, buffers)
            except OSError as exc:
                self._error = exc
            finally:
                self._queue.task_done()


def write_all(fd: int, offset: int, buffers: list) -> None:
    """pwritev ``buffers`` at ``offset``, IOV_MAX at a time, finishing short writes."""
    for s in range(0, len(buffers), IOV_MAX):
        part = buffers[s:s + IOV_MAX]
        done = os.pwritev(fd, part, offset)
        want = sum(len(b) for b in part) if len(part) > 1 else len(part[0])
        while done < want:  # short write (disk full is an OSError): resume where it stopped
            rest = b"".join(bytes(b) for b in part)[done:]
            done += os.pwrite(fd, rest, offset + done)
        offset += want
