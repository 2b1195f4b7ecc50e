"""extract's compiled writer of bulk runs (wire/_runscan.c write_run) against the Python
loop of RamImage._apply_run: the same bytes and the same holes, on generated runs
(every stretch shape, more than IOV_MAX pages) and on QEMU's captures."""

from __future__ import annotations

import os
import random
from array import array

import pytest

import migstream.image.ramimage as ri
from migstream import StreamDecoder
from migstream.events import PageRun
from migstream.events import RamBlock
from migstream.events import RamBlockList
from migstream.image.ramimage import RamImage
from migstream.wire import fastpath
from migstream.wire import grammar as g
from support.samples import raw_stream
from support.samples import sample_by_name

F = g.RamFlag
PS = 4096
needs_compiled = pytest.mark.skipif(fastpath.write_run is None, reason="built without a C compiler")


def run_event(rnd, first, kinds, fills=None):
    """A PageRun as the decoder makes it (starts: array of int64); ``fills``: record
    index -> fill byte of that ZERO record (default 0)."""
    data, starts = bytearray(), array("q")
    for i, k in enumerate(kinds):
        starts.append(len(data))
        data += ((first + i) * PS | k | F.CONTINUE).to_bytes(8, "big")
        data += rnd.randbytes(PS) if k == F.PAGE else bytes([(fills or {}).get(i, 0)])
    return PageRun(0, "pc.ram", first * PS, len(kinds), PS, memoryview(bytes(data)), starts, bytes(kinds))


def layout(path) -> tuple[bytes, list]:
    """The file's bytes and its data extents (SEEK_DATA/SEEK_HOLE)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        extents, pos = [], 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, end))
            pos = end
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        return f.read(), extents


def write_runs(directory, runs, npages, compiled, monkeypatch):
    monkeypatch.setattr(ri, "COMPILED", compiled)
    calls = []
    real = fastpath.write_run
    monkeypatch.setattr(ri, "write_run", lambda *a: calls.append(a) or real(*a))
    img = RamImage(str(directory), PS)
    img.apply(RamBlockList(0, 0, (RamBlock("pc.ram", npages * PS),)))
    for ev in runs:
        img.apply(ev)
    img.close(machine=None, complete=True)
    assert bool(calls) == compiled  # the compiled writer ran (or not) as asked
    return layout(directory / "pc.ram.bin")


@needs_compiled
@pytest.mark.parametrize("seed", range(6))
def test_write_run_equals_python_loop(tmp_path, monkeypatch, seed):
    rnd = random.Random(seed)
    npages = 3000
    shapes = [
        [F.ZERO] * 3 + [F.PAGE] * 5 + [F.ZERO] + [F.PAGE] + [F.ZERO] * 2 + [F.PAGE] + [F.ZERO],  # every stretch kind
        [F.PAGE] * 1500 + [F.ZERO] + [F.PAGE] * 700,  # more than IOV_MAX buffers in one write
        [rnd.choice([F.PAGE, F.ZERO, F.ZERO]) for _ in range(700)],
    ]
    runs, first = [], 0
    for kinds in shapes:
        runs.append(run_event(random.Random(seed * 7 + first), first, kinds))
        first += len(kinds) + rnd.randrange(0, 3)
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    compiled = write_runs(tmp_path / "c", runs, npages, True, monkeypatch)
    python = write_runs(tmp_path / "p", runs, npages, False, monkeypatch)
    assert compiled[0] == python[0]
    assert compiled[1] == python[1]


@needs_compiled
@pytest.mark.parametrize("name", ["x86-stopped", "x86-running", "aarch64-virt"])
def test_extract_of_captures_equals_python_loop(tmp_path, monkeypatch, name):
    dec = StreamDecoder()
    dec.feed(raw_stream(sample_by_name(name)))
    dec.feed(b"")
    events = list(dec)
    assert any(isinstance(ev, PageRun) for ev in events)
    got = []
    for compiled in (True, False):
        monkeypatch.setattr(ri, "COMPILED", compiled)
        out = tmp_path / str(compiled)
        img = RamImage(str(out), PS)
        for ev in events:
            img.apply(ev)
        img.close(machine=None, complete=True)
        got.append({p.name: layout(p) for p in sorted(out.iterdir()) if p.suffix == ".bin"})
    assert got[0] == got[1] and got[0]


@needs_compiled
def test_write_run_refuses_inconsistent_runs(tmp_path):
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY)
    try:
        data = bytes(2 * (8 + PS))
        # starts and kinds of different lengths, a page past the data, starts going back
        for starts, kinds in (([0, 8 + PS], b"\x08"), ([0, 4 * PS], b"\x08\x08"), ([8 + PS, 0], b"\x02\x02")):
            with pytest.raises(ValueError):
                fastpath.write_run(fd, data, array("q", starts), kinds, int(F.PAGE), PS, 0, 2, bytes(PS))
    finally:
        os.close(fd)


@needs_compiled
def test_zero_record_with_a_fill_byte(tmp_path, monkeypatch):
    """A ZERO record whose fill byte is not 0 (ram_handle_zero memsets the page with it):
    the compiled writer declines the run, which is then applied record by record."""
    kinds = [F.PAGE] * 3 + [F.ZERO] * 4 + [F.PAGE] * 2
    run = run_event(random.Random(1), 10, kinds, fills={4: 0x5A})
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    compiled = write_runs(tmp_path / "c", [run], 64, True, monkeypatch)
    python = write_runs(tmp_path / "p", [run], 64, False, monkeypatch)
    assert compiled == python
    assert compiled[0][14 * PS : 15 * PS] == b"\x5a" * PS
    assert compiled[0][13 * PS : 14 * PS] == bytes(PS)
