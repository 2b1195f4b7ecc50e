"""compress_page reproduces QEMU 7.2's COMPRESS_PAGE payloads; PageCompressor
keeps input order and the same bytes with several threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib

import numpy as np
import pytest

from migstream.codecs.zlibpage import PageCompressor
from migstream.codecs.zlibpage import compress_page
from migstream.wire.grammar import RamFlag
from support.page_history import page_changes

PAGE = 4096


def test_every_compress_page_record_of_the_qemu_capture_is_reproduced():
    # The capture used QEMU's default compress-level, 1 (zlib header 78 01).
    changes = list(page_changes("x86-compress", {int(RamFlag.COMPRESS_PAGE)}))
    assert len(changes) >= 2700  # the committed capture holds 2775
    assert {bytes(c.record.data[:2]) for c in changes} == {b"\x78\x01"}
    mismatches = [c.record.offset for c in changes if compress_page(c.after, 1) != bytes(c.record.data)]
    assert mismatches == []


# --- zlib driven the way QEMU drives it ------------------------------------------------


class ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


Z_OK, Z_STREAM_END, Z_FINISH = 0, 1, 4


@pytest.fixture(scope="module")
def libz():
    name = ctypes.util.find_library("z")
    if name is None:
        pytest.skip("libz shared library not found")
    lib = ctypes.CDLL(name)
    lib.zlibVersion.restype = ctypes.c_char_p
    return lib


def qemu_style_compressor(libz, level: int):
    """One z_stream, deflateInit(level) once; per page deflateReset + deflate(Z_FINISH)
    into a buffer larger than compressBound (QEMU writes into its IO buffer)."""
    strm = ZStream()
    assert libz.deflateInit_(ctypes.byref(strm), level, libz.zlibVersion(), ctypes.sizeof(ZStream)) == Z_OK
    out = ctypes.create_string_buffer(32768)

    def compress(page: bytes) -> bytes:
        assert libz.deflateReset(ctypes.byref(strm)) == Z_OK
        src = ctypes.create_string_buffer(page, len(page))
        strm.next_in, strm.avail_in = ctypes.addressof(src), len(page)
        strm.next_out, strm.avail_out = ctypes.addressof(out), len(out)
        assert libz.deflate(ctypes.byref(strm), Z_FINISH) == Z_STREAM_END
        return out.raw[: len(out) - strm.avail_out]

    return compress, lambda: libz.deflateEnd(ctypes.byref(strm))


def sample_pages() -> list[bytes]:
    rng = np.random.default_rng(5)
    text = b"the quick brown fox jumps over the lazy dog %d\n" * 100
    pages = [
        rng.integers(0, 256, PAGE, np.uint8).tobytes(),  # incompressible
        (text % tuple(range(100)))[:PAGE].ljust(PAGE, b"."),
        bytes(PAGE - 4) + b"\x01\x02\x03\x04",
        bytes([0x55]) * PAGE,
        (np.arange(PAGE) % 7).astype(np.uint8).tobytes(),
    ]
    return pages * 2  # the second round reuses the stream after other pages


@pytest.mark.parametrize("level", range(10))
def test_equals_zlib_driven_like_qemu(libz, level):
    compress, end = qemu_style_compressor(libz, level)
    try:
        for page in sample_pages():
            assert compress_page(page, level) == compress(page)
    finally:
        end()


# --- PageCompressor ----------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_map_keeps_order_and_bytes(threads):
    rng = np.random.default_rng(threads)
    # Rows of a numpy image, as the encoder hands them over; 150 pages = several batches.
    image = rng.integers(0, 4, (150, PAGE), np.uint8)
    with PageCompressor(threads, 1, batch_pages=16) as comp:
        got = list(comp.map(list(image)))
    assert got == [zlib.compress(row.tobytes(), 1) for row in image]
    assert [zlib.decompress(z) for z in got] == [row.tobytes() for row in image]


def test_map_empty_and_reuse():
    comp = PageCompressor(2, 6)
    assert list(comp.map([])) == []
    assert list(comp.map([bytes(PAGE)])) == [zlib.compress(bytes(PAGE), 6)]
    assert list(comp.map(iter([b"\x01" * PAGE] * 3))) == [zlib.compress(b"\x01" * PAGE, 6)] * 3
    comp.close()


def test_bad_arguments():
    with pytest.raises(ValueError):
        PageCompressor(0, 1)
    with pytest.raises(ValueError):
        PageCompressor(1, 10)


def test_zlib_compress_releases_the_gil():
    """What PageCompressor's parallelism rests on: while one thread is inside
    zlib.compress, another thread keeps running Python code.  (A call holding
    the GIL would let the main thread run a handful of iterations at most.)"""
    import threading

    data = np.random.default_rng(0).integers(0, 16, 1 << 20, np.uint8).tobytes()
    started, finished = threading.Event(), threading.Event()

    def work():
        started.set()
        zlib.compress(data, 9)
        finished.set()

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    spins = 0
    while not finished.is_set():
        spins += 1
    t.join()
    assert spins > 1000, spins
