"""Hostile guest-physical images (the input of ``encode --template``): ELF cores and
LiME files built from random headers, and damage sweeps over a real ``dump`` output.
The contract (as for streams, tests/unit/test_fuzz.py): open and read, or raise
UsageError with the file offset; nothing else, no hang, no allocation the file's
size does not pay for."""

from __future__ import annotations

import struct
import subprocess
import sys

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from migstream.containers.physimage import ELF64_HEADER
from migstream.containers.physimage import ELF64_PHDR
from migstream.containers.physimage import LIME_HEADER
from migstream.containers.physimage import LIME_MAGIC
from migstream.containers.physimage import PhysicalImage
from migstream.errors import UsageError
from support.samples import ROOT

u64 = st.one_of(st.integers(0, 1 << 20), st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 4095, 1 << 63]))


def _check(path, data: bytes) -> None:
    path.write_bytes(data)
    _check_file(path)


def _check_file(path) -> None:
    size = path.stat().st_size
    try:
        img = PhysicalImage(str(path))
    except UsageError as exc:
        assert "file offset 0x" in str(exc) or "overlap" in str(exc)
        return
    with img:
        for r in img.ranges[:64]:
            assert r.file_offset + r.filesz <= size
            for gpa in (r.gpa, r.end - 1):
                assert len(img.read(gpa, 1)) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    phdrs=st.lists(st.tuples(st.sampled_from([1, 4, 0, 7]), u64, u64, u64, u64), max_size=8),
    phoff=st.one_of(st.just(64), u64),
    phnum_extra=st.integers(0, 3),
    cls=st.sampled_from([2, 2, 1, 3]),
    tail=st.binary(max_size=256),
)
def test_random_elf(tmp_path, phdrs, phoff, phnum_extra, cls, tail):
    ident = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9)
    table = b"".join(struct.pack("<" + ELF64_PHDR, t, 7, off, 0, gpa, fs, ms, 0) for t, off, gpa, fs, ms in phdrs)
    head = struct.pack("<" + ELF64_HEADER, ident, 4, 62, 1, 0, phoff, 0, 0, 64, 56, len(phdrs) + phnum_extra, 0, 0, 0)
    _check(tmp_path / "f.elf", head + table + tail)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ranges=st.lists(st.tuples(st.sampled_from([LIME_MAGIC, LIME_MAGIC, 0]), st.sampled_from([1, 1, 2]), u64, u64,
                              st.integers(0, 64)), max_size=6),
)  # fmt: skip
def test_random_lime(tmp_path, ranges):
    blob = b"".join(struct.pack(LIME_HEADER, m, v, s, e, 0) + bytes(n) for m, v, s, e, n in ranges)
    _check(tmp_path / "f.lime", blob)


def test_damage_sweep_on_a_real_dump(tmp_path):
    """Every truncation of the header area and byte flips in it of a real ELF and
    LiME dump (of the bundled xbzrle capture)."""
    for fmt in ("elf", "lime"):
        out = tmp_path / f"d.{fmt}"
        subprocess.run(
            [sys.executable, "-m", "migstream", "dump", str(ROOT / "samples" / "x86-xbzrle.mig.zst"), "-o", str(out),
             "--format", fmt], check=True, capture_output=True,
        )  # fmt: skip
        good = out.read_bytes()
        for cut in list(range(0, 200, 7)) + [len(good) - 1, len(good) // 2]:
            _check(tmp_path / "cut", good[:cut])
        # Flips in place in the real file (the bytes after the header stay as they are).
        with open(out, "r+b") as f:
            for i in range(0, 200, 3):
                for x in (0x01, 0x80, 0xFF):
                    f.seek(i)
                    f.write(bytes([good[i] ^ x]))
                    f.flush()
                    _check_file(out)
                    f.seek(i)
                    f.write(good[i : i + 1])
                    f.flush()
