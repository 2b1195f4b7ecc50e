"""RamImage (sparse block files, batched background writes) against a naive model:
one bytearray per block to which every record is applied in stream order."""

import os
import random

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from migstream.codecs.xbzrle import xbzrle_decode_into
from migstream.events import PageRecord
from migstream.events import PageRun
from migstream.events import RamBlock
from migstream.events import RamBlockList
from migstream.image.ramimage import RamImage
from migstream.wire import grammar as g

F = g.RamFlag
PS = 4096
BLOCKS = {"pc.ram": 64, "pc.bios": 4}  # pages


def page_bytes(rnd, style):
    if style == "zero":
        return bytes(PS)
    if style == "fill":
        return bytes([rnd.randrange(1, 256)]) * PS
    return rnd.randbytes(PS)


def run_event(rnd, block, first, kinds, fills=True):
    """A PageRun as the decoder builds it: the raw records back to back."""
    data, starts, pages = bytearray(), [], []
    for i, k in enumerate(kinds):
        starts.append(len(data))
        addr = (first + i) * PS
        data += (addr | k | F.CONTINUE).to_bytes(8, "big")
        if k == F.PAGE:
            p = rnd.randbytes(PS) if rnd.random() < 0.7 else bytes(PS)
            data += p
        else:
            p = bytes([0 if not fills or rnd.random() < 0.8 else rnd.randrange(1, 256)])
            data += p
        pages.append(p)
    ev = PageRun(0, block, first * PS, len(kinds), PS, memoryview(bytes(data)), starts, bytes(int(k) for k in kinds))
    return ev


def xbzrle_for(rnd):
    """A valid XBZRLE delta: skip some bytes, then replace a few."""
    z = rnd.randrange(0, PS - 16)
    n = rnd.randrange(1, 16)

    def uleb(v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    return uleb(z) + uleb(n) + rnd.randbytes(n)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12))
def test_ramimage_matches_a_naive_model(tmp_path_factory, seed, steps):
    rnd = random.Random(seed)
    out = tmp_path_factory.mktemp("img")
    img = RamImage(str(out), PS)
    img.apply(RamBlockList(0, 0, tuple(RamBlock(n, c * PS) for n, c in BLOCKS.items())))
    model = {n: bytearray(c * PS) for n, c in BLOCKS.items()}
    for _ in range(steps):
        block = rnd.choice(list(BLOCKS))
        npages = BLOCKS[block]
        what = rnd.random()
        if what < 0.5:
            first = rnd.randrange(0, npages - 1)
            count = rnd.randrange(2, npages - first + 1)
            kinds = [F.PAGE if rnd.random() < rnd.random() else F.ZERO for _ in range(count)]
            ev = run_event(rnd, block, first, kinds)
            img.apply(ev)
            for rec in ev.records():
                a = rec.addr
                model[block][a : a + PS] = bytes(rec.data) if rec.kind == F.PAGE else bytes([rec.fill]) * PS
        else:
            addr = rnd.randrange(npages) * PS
            kind = rnd.choice([F.PAGE, F.ZERO, F.XBZRLE])
            if kind == F.PAGE:
                data = page_bytes(rnd, rnd.choice(["zero", "fill", "rand"]))
                img.apply(PageRecord(0, kind, block, addr, 8, memoryview(data)))
                model[block][addr : addr + PS] = data
            elif kind == F.ZERO:
                fill = rnd.choice([0, 0, 7])
                img.apply(PageRecord(0, kind, block, addr, 8, memoryview(b""), fill))
                model[block][addr : addr + PS] = bytes([fill]) * PS
            else:
                delta = xbzrle_for(rnd)
                img.apply(PageRecord(0, kind, block, addr, 8, memoryview(delta), encoding=1))
                page = bytearray(model[block][addr : addr + PS])
                xbzrle_decode_into(delta, page)
                model[block][addr : addr + PS] = page
    manifest = img.close(machine="pc-i440fx-7.2", complete=True)
    for b in manifest["blocks"]:
        got = (out / b["file"]).read_bytes()
        assert got == bytes(model[b["name"]]), b["name"]


def test_long_zero_stretches_stay_holes(tmp_path):
    """A run of data, 192 zero pages, data: the zero stretch is not written."""
    img = RamImage(str(tmp_path), PS)
    n = 256
    img.apply(RamBlockList(0, 0, (RamBlock("pc.ram", n * PS),)))
    kinds = [F.PAGE] * 32 + [F.ZERO] * 192 + [F.PAGE] * 32
    img.apply(run_event(random.Random(2), "pc.ram", 0, kinds, fills=False))
    img.close(machine=None, complete=True)
    fd = os.open(tmp_path / "pc.ram.bin", os.O_RDONLY)
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 32 * PS <= hole <= 64 * PS, hole  # the hole starts where the zero stretch does
        data_again = os.lseek(fd, hole, os.SEEK_DATA)
        assert data_again >= 200 * PS
    finally:
        os.close(fd)
