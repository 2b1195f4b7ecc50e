"""image/pwrite.py: buffers land back to back at the offset, more than IOV_MAX of
them, and short writes are finished (pwritev and writev alike)."""

from __future__ import annotations

import os

import numpy as np

from migstream.image import pwrite
from migstream.image.pwrite import IOV_MAX
from migstream.image.pwrite import pwrite_all
from migstream.image.pwrite import write_buffers


def _buffers(n: int) -> list:
    return [bytes([i % 251]) * (1 + i % 7) for i in range(n)]


def test_more_than_iov_max_buffers_at_an_offset(tmp_path):
    bufs = _buffers(2 * IOV_MAX + 5)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDWR)
    try:
        write_buffers(fd, bufs, 3)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"xxx" + b"".join(bufs)


def test_file_position_when_no_offset(tmp_path):
    bufs = [memoryview(np.arange(4096, dtype=np.uint8))[i : i + 100] for i in range(0, 3000, 100)]
    r, w = os.pipe()
    try:
        write_buffers(w, bufs, None)
        os.close(w)
        got = b""
        while piece := os.read(r, 1 << 16):
            got += piece
    finally:
        os.close(r)
    assert got == b"".join(bytes(b) for b in bufs)


def test_short_writes_are_finished(tmp_path, monkeypatch):
    real = os.pwritev

    def short(fd, bufs, offset):  # the kernel may write less than asked
        return real(fd, [bytes(bufs[0])[:1]], offset)

    monkeypatch.setattr(pwrite.os, "pwritev", short)
    bufs = _buffers(IOV_MAX + 3)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        write_buffers(fd, bufs, 0)
        pwrite_all(fd, b"tail", sum(map(len, bufs)))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(bufs) + b"tail"
