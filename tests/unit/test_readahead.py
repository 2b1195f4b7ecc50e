"""The input read ahead on a second thread (containers/readahead.py): the bytes come
in order and exact, a buffer somebody still holds a view of is never read into
again, the pool stays small when views are let go and gives way to a map when they
are not, and errors and early stops reach the consumer without a stuck thread."""

from __future__ import annotations

import gzip
import os
import threading

import pytest

from migstream.containers import readahead
from migstream.containers import sources
from migstream.containers.sources import StreamSource
from migstream.errors import UsageError


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of 4 KiB, so a small file spans many of them, and files of any size
    read ahead (not mapped)."""
    monkeypatch.setattr(readahead, "WINDOW", 4096)
    monkeypatch.setattr(sources, "READ_AHEAD_MIN", 0)
    return 4096


def _file(tmp_path, size: int) -> tuple[str, bytes]:
    # Every window different (its number repeated), so a window read into the wrong
    # buffer or read twice shows.
    data = b"".join(i.to_bytes(4, "little") * 1024 for i in range(size // 4096 + 1))[:size]
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    return str(path), data


def _windows(path: str, start: int, end: int) -> readahead.ReadAhead:
    fd = os.open(path, os.O_RDONLY)
    ahead = readahead.file_windows(fd, start, end)
    ahead.fd = fd  # closed by the caller
    return ahead


def test_file_windows_are_the_file_in_order(tmp_path, small_windows):
    path, data = _file(tmp_path, 40 * 4096 + 123)
    for start, end in [(0, len(data)), (100, len(data)), (5000, 9 * 4096 + 7), (len(data), len(data))]:
        ahead = _windows(path, start, end)
        got = b"".join(bytes(v) for v in ahead)
        ahead.close()
        os.close(ahead.fd)
        assert got == data[start:end], (start, end)


def test_a_held_window_keeps_its_bytes_and_let_go_buffers_are_reused(tmp_path, small_windows):
    path, data = _file(tmp_path, 64 * 4096)
    ahead = _windows(path, 0, len(data))
    held = next(ahead)  # kept to the end: its buffer must not be read into again
    seen = {id(held.obj)}
    for k, view in enumerate(ahead, start=1):
        assert bytes(view) == data[k * 4096 : (k + 1) * 4096]
        seen.add(id(view.obj))
        del view
    ahead.close()
    os.close(ahead.fd)
    assert bytes(held) == data[:4096]
    # 64 windows through a handful of buffers: the let-go ones were read into again.
    assert len(seen) <= 6, len(seen)


def test_views_never_let_go_make_it_map_the_rest(tmp_path, small_windows):
    path, data = _file(tmp_path, (readahead.MAX_BUFFERS + 10) * 4096 + 5)
    ahead = _windows(path, 0, len(data))
    views = list(ahead)  # all held: the pool fills up, the rest comes from a map
    ahead.close()
    os.close(ahead.fd)
    assert b"".join(bytes(v) for v in views) == data
    buffers = {id(v.obj) for v in views}
    assert len(buffers) == readahead.MAX_BUFFERS + 1  # the pool, then one map


def test_an_error_in_the_reader_reaches_the_consumer_in_order():
    calls = []

    def read(size):
        calls.append(size)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        return b"x" * size

    ahead = readahead.reads(read, 10)
    assert next(ahead) == b"x" * 10
    assert next(ahead) == b"x" * 10
    with pytest.raises(OSError, match="Input/output"):
        next(ahead)
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()


def test_closing_early_stops_the_reading_thread():
    started = threading.Event()

    def read(size):  # never ends by itself
        started.set()
        return b"y" * size

    ahead = readahead.reads(read, 1 << 16)
    assert next(ahead) == b"y" * (1 << 16)
    ahead.close()
    assert not ahead._thread.is_alive()
    with pytest.raises(StopIteration):
        next(ahead)


def test_a_read_error_of_the_input_file_names_the_file_and_offset(tmp_path, small_windows, monkeypatch):
    path, data = _file(tmp_path, 10 * 4096)
    real = os.preadv

    def failing(fd, buffers, offset):
        if offset >= 3 * 4096:
            raise OSError(5, "Input/output error")
        return real(fd, buffers, offset)

    monkeypatch.setattr(readahead.os, "preadv", failing)
    with StreamSource(path) as source:
        chunks = source.chunks()
        assert bytes(next(chunks)) == data[:4096]
        with pytest.raises(
            UsageError, match=r"input\.bin: cannot read: Input/output error \(reading 4096 bytes at byte 12288\)"
        ):
            for _ in chunks:
                pass


def test_closing_a_source_mid_stream_stops_its_read_ahead(tmp_path):
    # A gzip-compressed input, many read-ahead chunks long.
    path = tmp_path / "big.gz"
    payload = os.urandom(1 << 20) * 12
    path.write_bytes(gzip.compress(payload, compresslevel=1))
    source = StreamSource(str(path))
    chunks = source.chunks()
    first = next(chunks)
    assert bytes(first) == payload[: len(first)]
    ahead = source._ahead
    assert ahead is not None
    source.close()
    assert not ahead._thread.is_alive()


@pytest.mark.parametrize("name", ["x86-xbzrle.mig.zst", "libvirt-raw.img.zst"])
def test_extract_reads_ahead_what_it_maps(tmp_path, monkeypatch, name):
    """A real capture (and a raw libvirt save image, whose stream starts after its XML)
    extracted through 64 KiB read-ahead windows, so records and device sections
    straddle windows: the same files as through the map."""
    import zstandard

    from migstream.tools.extract import extract

    here = os.path.join(os.path.dirname(__file__), "..", "..", "samples", name)
    plain = tmp_path / name.removesuffix(".zst")
    with open(here, "rb") as f:
        plain.write_bytes(zstandard.ZstdDecompressor().stream_reader(f).read())
    assert plain.stat().st_size < sources.READ_AHEAD_MIN  # so the default run maps it
    extract(str(plain), str(tmp_path / "mapped"))
    monkeypatch.setattr(readahead, "WINDOW", 64 << 10)
    monkeypatch.setattr(sources, "READ_AHEAD_MIN", 0)
    windows = []

    def counted(fd, start, end):
        windows.append((start, end))
        return readahead.file_windows(fd, start, end)

    monkeypatch.setattr(sources, "file_windows", counted)
    extract(str(plain), str(tmp_path / "read"))
    assert windows and windows[0][1] == plain.stat().st_size  # it did read ahead, to the end
    mapped = sorted(os.listdir(tmp_path / "mapped"))
    assert mapped == sorted(os.listdir(tmp_path / "read")) and len(mapped) > 2
    for f in mapped:
        assert (tmp_path / "mapped" / f).read_bytes() == (tmp_path / "read" / f).read_bytes(), f
