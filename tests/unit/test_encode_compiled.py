"""The encoder's compiled bulk path (wire/_runscan.c write_pages) against its numpy path:
the same bytes for every page kind, batch boundary, iovec limit, block order and sink
(a file at offsets, a pipe in order)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import migstream.encode.encoder as enc
from migstream import FdSink
from migstream import MemoryImage
from migstream import encode_stream
from migstream.wire import fastpath
from migstream.wire.grammar import RAM_CONTINUE
from migstream.wire.grammar import RAM_PAGE
from migstream.wire.grammar import RAM_ZERO

PS = 4096
needs_compiled = pytest.mark.skipif(fastpath.write_pages is None, reason="built without a C compiler")


def tricky_pages(n: int, seed: int) -> np.ndarray:
    """Zero pages and pages that are zero but for one byte in every position class:
    first/last byte, inside the first and last word, middle of the page."""
    rng = np.random.default_rng(seed)
    data = np.zeros((n, PS), np.uint8)
    for i in range(n):
        match rng.integers(0, 8):
            case 0 | 1:
                pass  # zero
            case 2:
                data[i] = rng.integers(0, 256, PS, dtype=np.uint8)
            case 3:
                data[i, 0] = 1
            case 4:
                data[i, PS - 1] = 0x80
            case 5:
                data[i, 7] = 2
            case 6:
                data[i, rng.integers(8, PS - 8)] = 3
            case 7:
                data[i, PS - 8] = 4
    return data.reshape(-1)


@needs_compiled
def test_write_pages_records(tmp_path):
    """The records by their definition (ram.c save_zero_page / save_normal_page), at
    an offset into the file and with writev at the file position (offset -1)."""
    data = tricky_pages(40, 5)
    pages = data.reshape(40, PS)
    zero = bytes(int(not pages[p].any()) for p in range(3, 33))
    want = bytearray()
    for p in range(3, 33):
        tag = (RAM_ZERO if zero[p - 3] else RAM_PAGE) | RAM_CONTINUE
        want += (p * PS + tag).to_bytes(8, "big") + (b"\0" if zero[p - 3] else pages[p].tobytes())
    assert 0 < sum(zero) < 30
    tags = (8, RAM_ZERO | RAM_CONTINUE, 9, RAM_PAGE | RAM_CONTINUE)
    path = tmp_path / "records"
    at = 4 + len(want) + 10
    with open(path, "wb") as f:
        f.write(b"head")
        f.flush()
        assert fastpath.write_pages(f.fileno(), at, data, 3, 30, PS, *tags, zero, bytearray(30 * 9)) == len(want)
        assert fastpath.write_pages(f.fileno(), -1, data, 3, 30, PS, *tags, zero, bytearray(30 * 9)) == len(want)
        assert os.lseek(f.fileno(), 0, os.SEEK_CUR) == 4 + len(want)  # writev moved the position, pwritev not
    got = path.read_bytes()
    assert got == b"head" + bytes(want) + bytes(10) + bytes(want)


def _encoded_to_file(blocks, tmp_path, monkeypatch, direct: bool, name: str) -> bytes:
    monkeypatch.setattr(enc, "DIRECT", direct)
    path = tmp_path / name
    with open(path, "wb") as f:
        sink = FdSink(f.fileno(), threads=2, in_flight=4)
        encode_stream([MemoryImage.from_arrays("pc-i440fx-7.2", blocks)], sink)
        sink.flush()
        sink.close()
    return path.read_bytes()


def _runs(*stretches) -> np.ndarray:
    """Pages in stretches of (count, kind): kind 'z' zero, 'p' random."""
    rng = np.random.default_rng(7)
    parts = [
        np.zeros(n * PS, np.uint8) if kind == "z" else rng.integers(1, 256, n * PS, dtype=np.uint8)
        for n, kind in stretches
    ]
    return np.concatenate(parts)


@needs_compiled
@pytest.mark.parametrize("batch", [1, 3, 2048])
def test_direct_writes_equal_the_numpy_path(monkeypatch, tmp_path, batch):
    """write_pages straight from the image into the file: the same bytes as the numpy
    path (which writes through FdSink's writers), for every page kind and batch cut."""
    monkeypatch.setattr(enc, "BATCH_PAGES", batch)
    blocks = [("pc.ram", tricky_pages(300, 1)), ("vga.vram", tricky_pages(17, 2)), ("pc.bios", tricky_pages(1, 3))]
    calls = []
    real = enc.write_pages

    def counted(*args):
        calls.append(args[4])
        return real(*args)

    want = _encoded_to_file(blocks, tmp_path, monkeypatch, False, "numpy.mig")
    monkeypatch.setattr(enc, "write_pages", counted)
    got = _encoded_to_file(blocks, tmp_path, monkeypatch, True, "direct.mig")
    assert sum(calls) == 299 + 16  # every page but each block's first (it names the block)
    assert got == want


@needs_compiled
@pytest.mark.parametrize(
    "stretches",
    [
        [(1, "p"), (512, "p"), (3, "z")],  # a full iovec array, then only zeros: the tail flushes first
        [(1, "z"), (1500, "p"), (40, "z"), (700, "p")],  # several pwritev calls in one batch
        [(1, "p"), (2000, "z")],  # nothing but headers and fills
        [(1, "z"), (511, "p"), (1, "z"), (1, "p")],
    ],
)
def test_direct_writes_across_iovec_limits(monkeypatch, tmp_path, stretches):
    blocks = [("pc.ram", _runs(*stretches))]
    want = _encoded_to_file(blocks, tmp_path, monkeypatch, False, "numpy.mig")
    assert _encoded_to_file(blocks, tmp_path, monkeypatch, True, "direct.mig") == want


@needs_compiled
def test_direct_writes_refuse_bad_arguments(tmp_path):
    data = bytearray(4 * PS)
    zero = b"\x01" * 4  # all four pages ZERO records (as the caller found them)
    glue = bytearray(4 * 9)
    with open(tmp_path / "f", "wb") as f:
        fd = f.fileno()
        tags = (8, RAM_ZERO | RAM_CONTINUE, 9, RAM_PAGE | RAM_CONTINUE)
        assert fastpath.write_pages(fd, 0, data, 0, 4, PS, *tags, zero, glue) == 4 * 9
        with pytest.raises(ValueError):
            fastpath.write_pages(fd, 0, data, 1, 4, PS, *tags, zero, glue)  # past the data
        with pytest.raises(ValueError):
            fastpath.write_pages(fd, 0, data, 0, 4, PS, *tags, zero[:3], glue)  # a short zero map
        with pytest.raises(ValueError):
            fastpath.write_pages(fd, 0, data, 0, 4, PS, *tags, zero, glue[:35])  # glue too small
        with pytest.raises(ValueError):
            fastpath.write_pages(fd, -2, data, 0, 4, PS, *tags, zero, glue)  # -1 is "in order"


@needs_compiled
def test_direct_writes_into_a_pipe_equal_the_numpy_path(monkeypatch, tmp_path):
    """`encode -o -` into a pipe: the sink writes in order (reserve gives -1), write_pages
    uses writev; the bytes equal the numpy path's into a file."""

    monkeypatch.setattr(enc, "BATCH_PAGES", 5)
    blocks = [("pc.ram", tricky_pages(300, 8)), ("vga.vram", tricky_pages(9, 9))]
    want = _encoded_to_file(blocks, tmp_path, monkeypatch, False, "numpy.mig")
    monkeypatch.setattr(enc, "DIRECT", True)
    calls = []
    real = enc.write_pages
    monkeypatch.setattr(enc, "write_pages", lambda *a: calls.append(a[1]) or real(*a))
    r, w = os.pipe()
    got = bytearray()
    reader = threading.Thread(target=lambda: [got.extend(b) for b in iter(lambda: os.read(r, 1 << 16), b"")])
    reader.start()
    sink = FdSink(w)
    encode_stream([MemoryImage.from_arrays("pc-i440fx-7.2", blocks)], sink)
    sink.flush()
    os.close(w)
    reader.join()
    os.close(r)
    assert calls and set(calls) == {-1}
    assert bytes(got) == want
