"""Streams generated with migstream's own grammar builders (writer.py), for tests
that need shapes the committed QEMU samples do not have, or sizes they cannot."""

from __future__ import annotations

import random
import zlib

from migstream.wire import build as w
from migstream.wire.grammar import RamFlag

PS = 4096


def xbzrle_delta(runs) -> bytes:
    """An XBZRLE delta for [(skip, new bytes)...] (lengths < 128: one-byte ULEB128)."""
    out = bytearray()
    for skip, data in runs:
        assert skip < 128 and 0 < len(data) < 128
        out += bytes([skip, len(data)]) + data
    return bytes(out)


def mixed_stream(seed: int = 1, iterations: int = 3):
    """A RAM-only stream with every page encoding, block switches and CONTINUE
    runs.  Returns (bytes, blocks) where blocks = [(name, length)]."""
    rnd = random.Random(seed)
    blocks = [("pc.ram", 64 * PS), ("vga.vram", 16 * PS), ("pc.bios", 4 * PS)]
    out = bytearray(w.file_header())
    out += w.section_start(2, "ram", 0, 4)
    out += w.mem_size(blocks)
    out += w.ram_record(RamFlag.EOS)
    out += w.footer(2)
    for it in range(iterations):
        out += w.section_part(2, end=it == iterations - 1)
        for name, length in blocks:
            pages = length // PS
            chosen = sorted(rnd.sample(range(pages), k=pages if it == 0 else max(1, pages // 3)))
            first = True
            for p in chosen:
                kind = rnd.choice(
                    [RamFlag.PAGE, RamFlag.ZERO, RamFlag.ZERO] + ([RamFlag.XBZRLE, RamFlag.COMPRESS_PAGE] if it else [])
                )
                block = name if first else None
                first = False
                if kind == RamFlag.PAGE:
                    payload = {"data": rnd.randbytes(PS)}
                elif kind == RamFlag.ZERO:
                    payload = {"fill": 0}
                elif kind == RamFlag.XBZRLE:
                    runs = [(rnd.randrange(1, 100), rnd.randbytes(rnd.randrange(1, 20))) for _ in range(3)]
                    payload = {"encoding": 1, "data": xbzrle_delta(runs)}
                else:
                    page = bytes([rnd.randrange(4)]) * 100 + rnd.randbytes(64) + bytes(PS - 164)
                    payload = {"data": zlib.compress(page)}
                out += w.ram_record(kind, p * PS, block=block, payload=payload)
        out += w.ram_record(RamFlag.EOS)
        out += w.footer(2)
    out += w.eof()
    return bytes(out), blocks


def write_large_stream(path, size_bytes: int, *, delta_bytes: int = 900) -> int:
    """A stream of about ``size_bytes``: a START section, then PART sections that
    each resend pages 0..1023 of one 4 MiB block as XBZRLE deltas of
    ``delta_bytes`` changed bytes (records that cannot be batched, so indexing
    takes a while).  The part is built once and written many times."""
    blocks = [("pc.ram", 1024 * PS)]
    head = (
        w.file_header() + w.section_start(2, "ram", 0, 4) + w.mem_size(blocks) + w.ram_record(RamFlag.EOS) + w.footer(2)
    )
    chunk = min(delta_bytes, 127)
    runs = []
    left = delta_bytes
    while left > 0:
        n = min(chunk, left)
        runs.append((1, bytes([0x5A]) * n))
        left -= n
    delta = xbzrle_delta(runs)
    part = bytearray(w.section_part(2))
    for p in range(1024):
        part += w.ram_record(
            RamFlag.XBZRLE, p * PS, block="pc.ram" if p == 0 else None, payload={"encoding": 1, "data": delta}
        )
    part += w.ram_record(RamFlag.EOS) + w.footer(2)
    part = bytes(part)
    count = max(1, (size_bytes - len(head)) // len(part))
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(count):
            f.write(part)
        f.write(w.section_part(2, end=True) + w.ram_record(RamFlag.EOS) + w.footer(2) + w.eof())
    return count
