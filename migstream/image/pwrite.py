"""Writing buffers back to back at a file offset (or at the file position), IOV_MAX
at a time, finishing short writes: the one home of positional writes and IOV_MAX for
block files (image/), streams and mapped-ram files (encode/)."""

from __future__ import annotations

import os
from collections.abc import Sequence

#: Buffers per writev/pwritev call: Linux's UIO_MAXIOV (more fail with EINVAL).
IOV_MAX = 1024


def write_buffers(fd: int, buffers: Sequence, offset: int | None, group_sizes: Sequence[int] | None = None) -> None:
    """Write ``buffers`` back to back at ``offset`` of ``fd`` (pwritev), or at the
    file position when ``offset`` is None (writev: pipes, sockets, O_APPEND files),
    IOV_MAX buffers per call, finishing short writes.  ``group_sizes``, when given,
    is the byte count of each IOV_MAX group (saves measuring every buffer)."""
    for k, s in enumerate(range(0, len(buffers), IOV_MAX)):
        part = buffers[s : s + IOV_MAX]
        want = group_sizes[k] if group_sizes is not None else sum(map(len, part))
        done = os.writev(fd, part) if offset is None else os.pwritev(fd, part, offset)
        if done < want:  # short write (disk full is an OSError): resume where it stopped
            _finish(fd, part, done, offset)
        if offset is not None:
            offset += want


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write one buffer at ``offset`` of ``fd``, finishing short writes (pwrite: the
    mapped-ram writer issues one per run of pages, so no iovec list is built)."""
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _finish(fd: int, part: Sequence, done: int, offset: int | None) -> None:
    """Write what a short writev/pwritev left of ``part`` (``done`` bytes went out)."""
    pos = None if offset is None else offset + done
    for b in part:
        n = len(b)
        if done >= n:
            done -= n
            continue
        mv = memoryview(b).cast("B")[done:]
        done = 0
        while len(mv):
            k = os.write(fd, mv) if pos is None else os.pwrite(fd, mv, pos)
            if pos is not None:
                pos += k
            mv = mv[k:]
