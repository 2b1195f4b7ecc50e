"""The encoder's compiled bulk path (wire/_runscan.c build_pages) against its numpy path:
the same bytes for every page kind, batch boundary, block order and sink."""

from __future__ import annotations

import numpy as np
import pytest

import migstream.encode.encoder as enc
from migstream import BytesSink
from migstream import FdSink
from migstream import MemoryImage
from migstream import encode_stream
from migstream.wire import fastpath
from migstream.wire.grammar import RAM_CONTINUE
from migstream.wire.grammar import RAM_PAGE
from migstream.wire.grammar import RAM_ZERO

PS = 4096
needs_compiled = pytest.mark.skipif(fastpath.build_pages is None, reason="built without a C compiler")


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


def encoded(blocks, sink_factory=BytesSink, compiled=True, monkeypatch=None) -> bytes:
    monkeypatch.setattr(enc, "COMPILED", compiled)
    img = MemoryImage.from_arrays("pc-i440fx-7.2", blocks)
    sink = sink_factory()
    encode_stream([img], sink)
    return sink.getvalue()


@needs_compiled
@pytest.mark.parametrize("batch", [1, 3, 2048])
def test_compiled_bulk_equals_numpy_path(monkeypatch, batch):
    monkeypatch.setattr(enc, "BATCH_PAGES", batch)
    blocks = [("pc.ram", tricky_pages(300, 1)), ("vga.vram", tricky_pages(17, 2)), ("pc.bios", tricky_pages(1, 3))]
    assert encoded(blocks, compiled=True, monkeypatch=monkeypatch) == encoded(
        blocks, compiled=False, monkeypatch=monkeypatch
    )


@needs_compiled
def test_compiled_bulk_to_a_file_reuses_buffers_safely(monkeypatch, tmp_path):
    """Many small batches through FdSink's two writer threads: a batch buffer taken
    back while a writer still held it would show up as wrong bytes."""
    monkeypatch.setattr(enc, "BATCH_PAGES", 4)
    blocks = [("pc.ram", tricky_pages(2000, 4))]
    want = encoded(blocks, compiled=False, monkeypatch=monkeypatch)
    monkeypatch.setattr(enc, "COMPILED", True)
    path = tmp_path / "out.mig"
    with open(path, "wb") as f:
        sink = FdSink(f.fileno(), threads=2, in_flight=4)
        encode_stream([MemoryImage.from_arrays("pc-i440fx-7.2", blocks)], sink)
        sink.close()
    assert path.read_bytes() == want


@needs_compiled
def test_build_pages_records():
    data = tricky_pages(40, 5)
    out = bytearray(40 * (8 + PS))
    used, zero = fastpath.build_pages(data, 3, 30, PS, 8, RAM_ZERO | RAM_CONTINUE, 9, RAM_PAGE | RAM_CONTINUE, out)
    pages = data.reshape(40, PS)
    want = bytearray()
    for p in range(3, 33):
        is_zero = not pages[p].any()
        assert zero[p - 3] == is_zero
        tag = (RAM_ZERO if is_zero else RAM_PAGE) | RAM_CONTINUE
        want += (p * PS + tag).to_bytes(8, "big") + (b"\0" if is_zero else pages[p].tobytes())
    assert bytes(out[:used]) == bytes(want)


@needs_compiled
@pytest.mark.parametrize(
    "first, count, page_size, out_pages",
    [(0, 5, PS, 4), (-1, 1, PS, 4), (38, 3, PS, 8), (0, 1, 100, 4), (0, 1, PS, 0)],
)
def test_build_pages_refuses_bad_arguments(first, count, page_size, out_pages):
    data = bytes(40 * PS)
    with pytest.raises(ValueError):
        fastpath.build_pages(data, first, count, page_size, 8, 0x22, 9, 0x28, bytearray(out_pages * (8 + PS)))


def _encoded_to_file(blocks, tmp_path, monkeypatch, direct: bool, name: str) -> bytes:
    monkeypatch.setattr(enc, "DIRECT", direct)
    monkeypatch.setattr(enc, "COMPILED", False)
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
            fastpath.write_pages(fd, -1, data, 0, 4, PS, *tags, zero, glue)
