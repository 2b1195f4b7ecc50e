"""The one compressed-input opener (containers/compressed.py): recognition by
content and streaming decompression of every format it knows."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os

import pytest
import zstandard

from migstream.containers.compressed import detect_compression
from migstream.containers.compressed import file_compression
from migstream.containers.compressed import open_decompressed

DATA = os.urandom(1000) + bytes(300_000) + b"tail"

PACKERS = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    "bzip2": bz2.compress,
}


@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_opens_each_format_as_a_stream(kind):
    reader = open_decompressed(io.BytesIO(PACKERS[kind](DATA)), kind, "x")
    got = b""
    while piece := reader.read(4096):
        got += piece
    assert got == DATA


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd", "bzip2"])
def test_recognised_by_content(kind, tmp_path):
    packed = PACKERS[kind](DATA)
    assert detect_compression(packed[:16]) == kind
    path = tmp_path / "f"
    path.write_bytes(packed)
    assert file_compression(str(path)) == kind


def test_plain_is_not_recognised(tmp_path):
    # A QEMU stream starts with QEVM; text starting "BZh" is not bzip2 (the block magic follows).
    assert detect_compression(b"QEVM\x00\x00\x00\x03") is None
    assert detect_compression(b"BZh9 and then text") is None
    assert detect_compression(bz2.compress(b"")[:16]) == "bzip2"  # an empty bzip2 stream: end-of-stream magic
    path = tmp_path / "plain"
    path.write_bytes(b"QEVM")
    assert file_compression(str(path)) is None
    with pytest.raises(OSError):
        file_compression(str(tmp_path / "missing"))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown compression"):
        open_decompressed(io.BytesIO(b""), "lz4", "x")
