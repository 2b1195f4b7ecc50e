"""Where an encoded stream goes: memory (``BytesSink``) or a file descriptor
(``FdSink``: parallel pwritev at known offsets for regular files, writev in order
for pipes and sockets).  A sink has ``write``, ``writev(bufs, lengths=None)`` and
``flush``."""

from __future__ import annotations

import fcntl
import os
import stat
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..image.pwrite import IOV_MAX
from ..image.pwrite import write_buffers
from ..wire.fastpath import preallocate

#: Writes smaller than this are not preallocated (a header, the device sections).
PREALLOCATE_MIN = 1 << 20


class BytesSink:
    """Collects the stream in memory."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data) -> None:
        self.buffer += memoryview(data)

    def writev(self, bufs, lengths=None) -> None:
        for b in bufs:
            self.buffer += memoryview(b)

    def flush(self) -> None:
        pass

    def getvalue(self) -> bytes:
        return bytes(self.buffer)


class FdSink:
    """Writes to a file descriptor.

    A regular file is written with pwritev at offsets known in advance, by
    ``threads`` writer threads, so the kernel's copying of one batch overlaps with
    building the next (the records' sizes, hence their offsets, follow from the
    zero-page mask alone).  A pipe or socket is written in order with writev.
    Buffers are IOV_MAX at a time; short writes are finished.  ``lengths`` (a
    numpy array of the buffer sizes), when given, saves measuring every buffer.
    Call ``flush()`` at the end: it waits for the writers and raises their errors.
    """

    def __init__(self, fd: int, *, threads: int = 2, in_flight: int = 4) -> None:
        self.fd = fd
        self._pool = None
        # O_APPEND (`>> file`) makes Linux ignore pwritev's offset: write in order.
        if threads and stat.S_ISREG(os.fstat(fd).st_mode) and not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
            self.offset = os.lseek(fd, 0, os.SEEK_CUR)
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pwritev")
            self._pending: deque = deque()
            self._in_flight = in_flight
        # Each batch's range fallocate()d (here, while the writers write the batches
        # before it) before its pwritev: on ext4 the blocks come in one extent per batch,
        # not one delayed allocation per page.
        self._preallocate = self._pool is not None and preallocate is not None

    def write(self, data) -> None:
        self.writev([data])

    def reserve(self, nbytes: int) -> int:
        """The file offset where the next ``nbytes`` of the stream go, for a caller
        that writes them there itself, and writev's own batches (preallocated); -1 when
        this sink writes in order (a pipe, a socket, O_APPEND): everything before is
        written already, the caller writes at the file position."""
        if self._pool is None:
            return -1
        off = self.offset
        self.offset += nbytes
        if self._preallocate and nbytes >= PREALLOCATE_MIN and not preallocate(self.fd, off, nbytes):
            self._preallocate = False  # the file system cannot: plain writes from now on
        return off

    def writev(self, bufs, lengths=None) -> None:
        n = len(bufs)
        if not n:
            return
        if lengths is None:
            lengths = np.fromiter((len(b) for b in bufs), np.int64, n)
        wants = np.add.reduceat(lengths, np.arange(0, n, IOV_MAX)).tolist()
        if self._pool is None:
            self._write_parts(bufs, wants, None)
            return
        off = self.reserve(sum(wants))
        self._pending.append(self._pool.submit(self._write_parts, bufs, wants, off))
        while len(self._pending) > self._in_flight:
            self._pending.popleft().result()

    def _write_parts(self, bufs, wants, off) -> None:
        write_buffers(self.fd, bufs, off, wants)

    def flush(self) -> None:
        if self._pool is None:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            os.lseek(self.fd, self.offset, os.SEEK_SET)

    def close(self) -> None:
        """Stop the writers (without waiting for the stream to be complete)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
