"""Reading the next part of the input on a second thread while the decoder works on
the part before it.

The decoder and the writers run on the main thread; the read of the next window
(a copy out of the page cache, or a decompression) runs beside them on another core:
``os.preadv`` and the zlib, lzma, bz2 and zstd decompressors release the GIL while
they work, so the two overlap.  benchmarks/README.md (stop 22) has the figures.

Only for inputs whose reads end (regular files, plain or compressed): a read from a
pipe may wait for ever, and a thread stuck in it could not be stopped.  Plain files
under READ_AHEAD_MIN are mapped instead.

The decoder parses chunks in place (``StreamDecoder.feed``: a chunk stays unchanged
while its events are used), so a window's buffer is read into again only once nobody
holds a view of it any more: its reference count is back to what the pool alone
holds.  A consumer that keeps views (events) for long would otherwise make the pool
grow with the file; past ``MAX_BUFFERS`` the rest of the file is handed out as views
of a read-only map instead, which take no private memory.
"""

from __future__ import annotations

import mmap
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

#: Bytes read into one buffer: within the L3 cache several times over (32 MiB here),
#: so the writes that follow copy from cache.  4-8 MiB measured alike, 32 MiB slower.
WINDOW = 4 << 20

#: Buffers a file's read-ahead may hold before it falls back to mapping the file.
#: Decoding keeps 3-5 of them busy (the queue, the chunk being parsed, the one before).
MAX_BUFFERS = 16

#: Smaller plain files are mapped instead (sources.py): the thread and its fresh
#: buffers cost ~8 ms (`info` on an 8 MB stream: 0.133 -> 0.141 s), more than
#: reading beside the decoder saves on so few bytes.
READ_AHEAD_MIN = 64 << 20

#: Read-ahead items waiting for the consumer.
DEPTH = 2

#: What a producer hands ``put``; False means the consumer has gone (stop producing).
Put = Callable[[Any], bool]

_END = object()


class _Failed:
    """An exception raised on the reading thread, to be raised again in the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ReadAhead:
    """Runs ``produce(put)`` on its own thread and iterates over what it puts, in
    order; an exception in ``produce`` is raised by ``next()``.  ``close()`` stops
    the thread and waits for it (so that nothing reads a file its owner is closing)."""

    def __init__(self, produce: Callable[[Put], None], *, name: str = "migstream-read-ahead") -> None:
        self._items: queue.Queue = queue.Queue(maxsize=DEPTH)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, produce: Callable[[Put], None]) -> None:
        try:
            produce(self._put)
        except BaseException as exc:  # noqa: B036 - handed to the consumer, raised there
            self._put(_Failed(exc))
            return
        self._put(_END)

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        item = self._items.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.exc
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # free the producer if it waits to put
                self._items.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


def reads(read: Callable[[int], bytes], size: int) -> ReadAhead:
    """``read(size)`` called ahead until it returns b"" (included, as the end)."""

    def produce(put: Put) -> None:
        while True:
            data = read(size)
            if not put(data) or not data:
                return

    return ReadAhead(produce)


def file_windows(fd: int, start: int, end: int) -> ReadAhead:
    """Bytes ``start..end`` of the file ``fd`` as memoryviews of up to WINDOW bytes,
    read ahead; fewer when the file turns out shorter (it shrank)."""

    def produce(put: Put) -> None:
        pool: list[mmap.mmap] = []
        pos = start
        while pos < end:
            buf = _unused(pool)
            if buf is None:
                if len(pool) >= MAX_BUFFERS:
                    _put_mapped(put, fd, pos, end)
                    return
                buf = _new_buffer()
                pool.append(buf)
            want = min(WINDOW, end - pos)
            try:
                view = memoryview(buf)[: _pread_into(fd, buf, want, pos)]
            except OSError as exc:  # say where
                raise OSError(exc.errno, f"{exc.strerror} (reading {want} bytes at byte {pos})") from exc
            del buf  # the view (and whoever holds it) is now all that uses the buffer
            got = len(view)
            if not put(view):
                return
            del view
            if got < want:
                return
            pos += got

    return ReadAhead(produce)


def _pool_refs(pool: list) -> int:
    for buf in pool:
        return sys.getrefcount(buf)
    return 0


# What sys.getrefcount says of a buffer nobody else holds, counted the way _unused counts it.
_POOL_ONLY = _pool_refs([bytearray()])


def _unused(pool: list[mmap.mmap]) -> mmap.mmap | None:
    """A buffer of the pool that no view refers to any more, or None.  (Only CPython
    counts references so; elsewhere every window gets a new buffer until the pool is
    full, then the file is mapped.)"""
    if sys.implementation.name != "cpython":
        return None
    for buf in pool:
        if sys.getrefcount(buf) <= _POOL_ONLY:
            return buf
    return None


def _new_buffer() -> mmap.mmap:
    buf = mmap.mmap(-1, WINDOW)
    try:  # 2 MiB pages: fewer TLB misses for the copies out of it (a hint; may be off)
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):
        pass
    return buf


def _pread_into(fd: int, buf: mmap.mmap, want: int, pos: int) -> int:
    got = 0
    with memoryview(buf) as view:
        while got < want:
            n = os.preadv(fd, [view[got:want]], pos + got)
            if n <= 0:
                break
            got += n
    return got


def _put_mapped(put: Put, fd: int, pos: int, end: int) -> None:
    """The rest of the file as views of a read-only map (page cache, not private memory)."""
    size = os.fstat(fd).st_size
    if size <= pos:
        return
    view = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
    end = min(end, size)
    for at in range(pos, end, WINDOW):
        if not put(view[at : min(at + WINDOW, end)]):
            return
