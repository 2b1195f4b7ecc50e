"""Compressed input, the one place it is recognised and opened: the magic numbers
of gzip, xz, zstd and bzip2 (``detect_compression``), and a streaming reader for
those plus lzop (``open_decompressed``: libvirt save images name lzop in their
header; it runs the external program).  Used for streams (sources.py), multifd
channel files (multifd.py) and the progress share of the CLI.

A standalone bzip2 file is recognised by ``BZh``, the block size digit and the
magic of its first block (or of its end-of-stream marker, for an empty one): the
three letters alone could start a text file."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import subprocess
import threading
from typing import BinaryIO
from typing import cast

from ..errors import UsageError

#: The first bytes of each compressed format recognised by content.
MAGICS = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
HEAD = max(16, len(max(MAGICS, key=len)))  # bytes to peek for content detection
READ_CHUNK = 4 << 20  # read size for pipes and decompressors


#: bzip2: "BZh", a digit 1-9, then a block magic (pi) or the end-of-stream magic (sqrt pi).
_BZIP2_BLOCK_MAGICS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")


def detect_compression(head: bytes) -> str | None:
    """The compression whose magic ``head`` starts with (None: not compressed)."""
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[3:4] and head[4:10] in _BZIP2_BLOCK_MAGICS:
        return "bzip2"
    return None


def file_compression(path: str) -> str | None:
    """The compression of the file at ``path`` from its first bytes (OSError if it
    cannot be read)."""
    with open(path, "rb") as f:
        return detect_compression(f.read(HEAD))


def open_decompressed(raw: BinaryIO, kind: str, name: str) -> BinaryIO:
    """A streaming reader of the decompressed bytes of ``raw`` (positioned at the
    compressed data); ``kind`` is a name ``detect_compression`` returns, or bzip2/lzop.
    ``name`` (the input's path) goes into error messages."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]  # GzipFile is a binary file
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]  # LZMAFile is a binary file
    if kind == "bzip2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]  # BZ2File is a binary file
    if kind == "zstd":
        import zstandard  # imported on use: most inputs are not zstd

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), READ_CHUNK)
    if kind == "lzop":
        if shutil.which("lzop") is None:
            raise UsageError(f"{name}: lzop-compressed libvirt image needs the `lzop` program")
        # libvirt restores with `lzop -dc --ignore-warn` (qemu_saveimage.c).
        return io.BufferedReader(PipeReader(["lzop", "-dc", "--ignore-warn"], raw, "lzop"), READ_CHUNK)
    raise ValueError(f"unknown compression {kind!r}")


class PipeReader(io.RawIOBase):
    """The stdout of an external decompressor (lzop) fed from ``raw``.

    A file with a descriptor is handed to the child as its stdin (positioned at
    the compressed data); anything else is copied by a feeder thread.  Errors of
    the child (bad data) surface as OSError at the end of its output."""

    def __init__(self, argv: list[str], raw: BinaryIO, name: str) -> None:
        self._name = name
        stdin: int | BinaryIO = subprocess.PIPE
        self._feed_from: BinaryIO | None = None
        try:
            raw.fileno()
            if isinstance(raw, io.BufferedReader) and raw.peek(1) and raw.raw.tell() != raw.tell():
                raise io.UnsupportedOperation  # buffered bytes the child would not see
            os.lseek(raw.fileno(), raw.tell(), os.SEEK_SET)
            stdin = raw
        except (OSError, AttributeError, io.UnsupportedOperation):
            self._feed_from = raw
        self._proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # PIPE with the default buffering: both are buffered binary files.
        self._out = cast(io.BufferedReader, self._proc.stdout)
        self._err = cast(io.BufferedReader, self._proc.stderr)
        self._feeder = None
        if self._feed_from is not None:
            self._feeder = threading.Thread(target=self._feed, daemon=True)
            self._feeder.start()

    def _feed(self) -> None:
        assert self._feed_from is not None and self._proc.stdin is not None  # started only with a feed
        try:
            while data := self._feed_from.read(1 << 20):
                self._proc.stdin.write(data)
        except (BrokenPipeError, OSError, ValueError):
            pass
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._out.readinto(b)
        if n == 0:
            rc = self._proc.wait()
            if rc not in (0, 2):  # lzop exits 2 on warnings (libvirt passes --ignore-warn)
                err = self._err.read().decode("utf-8", "replace").strip()
                raise OSError(f"{self._name} exited with {rc}: {err}")
        return n

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._out, self._err):
            f.close()
        super().close()
