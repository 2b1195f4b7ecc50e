"""zero_page_mask marks exactly the all-zero pages, for every buffer kind."""

import mmap

import numpy as np
import pytest

from migstream.encode import zeropages
from migstream.encode.zeropages import zero_page_mask


def image(page_size: int, pages: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    img = np.zeros((pages, page_size), np.uint8)
    want = rng.random(pages) < 0.5
    for i in np.flatnonzero(~want):
        # One non-zero byte anywhere: first, last, or in between.
        img[i, rng.choice([0, page_size - 1, rng.integers(page_size)])] = rng.integers(1, 256)
    return img, want


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "numpy2d", "mmap"])
def test_buffer_kinds(kind, tmp_path):
    img, want = image(4096, 300)
    raw = img.tobytes()
    if kind == "bytes":
        buf = raw
    elif kind == "bytearray":
        buf = bytearray(raw)
    elif kind == "memoryview":
        buf = memoryview(raw)
    elif kind == "numpy":
        buf = np.frombuffer(raw, np.uint8)
    elif kind == "numpy2d":
        buf = img
    else:
        p = tmp_path / "img"
        p.write_bytes(raw)
        f = open(p, "rb")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    assert np.array_equal(zero_page_mask(buf, 4096), want)


def test_chunk_boundaries(monkeypatch):
    # Small chunks so pages straddle several of them.
    monkeypatch.setattr(zeropages, "CHUNK_BYTES", 3 * 4096)
    img, want = image(4096, 101, seed=3)
    assert np.array_equal(zero_page_mask(img, 4096), want)


@pytest.mark.parametrize("page_size", [8192, 65536, 4100])
def test_other_page_sizes(page_size):
    img, want = image(page_size, 20, seed=page_size)
    assert np.array_equal(zero_page_mask(img.tobytes(), page_size), want)


def test_unaligned_buffer():
    img, want = image(4096, 10, seed=9)
    raw = bytearray(b"\x01" + img.tobytes())
    view = memoryview(raw)[1:]  # not 8-byte aligned
    assert np.array_equal(zero_page_mask(view, 4096), want)


def test_empty_and_bad_length():
    assert zero_page_mask(b"", 4096).shape == (0,)
    with pytest.raises(ValueError):
        zero_page_mask(bytes(4097), 4096)
