"""Packet captures (libpcap, pcapng) of a migration: file formats (files.py), link
layers (links.py), TCP reassembly (tcp.py) and the connections of each migration
(migrations.py).  ``open_packet_capture`` is what ``StreamSource`` calls: for a file
that is not a capture it imports nothing beyond files.py (every command opens its input
through it; the reassembly modules are ~5 ms of start-up)."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING
from typing import BinaryIO

from ...errors import UsageError
from ..compressed import HEAD
from ..compressed import READ_CHUNK
from ..compressed import detect_compression
from ..compressed import open_decompressed
from .files import AmbiguousCapture
from .files import CaptureError
from .files import capture_kind
from .files import split_selector

if TYPE_CHECKING:  # what __getattr__ brings, for type checkers
    from .migrations import CaptureChannel as CaptureChannel
    from .migrations import Migration as Migration
    from .migrations import PacketCapture as PacketCapture
    from .tcp import CaptureGap as CaptureGap

_LAZY = {"CaptureChannel": "migrations", "Migration": "migrations", "PacketCapture": "migrations", "CaptureGap": "tcp"}

__all__ = [
    "AmbiguousCapture",
    "CaptureChannel",
    "CaptureError",
    "CaptureGap",
    "Migration",
    "PacketCapture",
    "open_packet_capture",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def open_packet_capture(path: str) -> tuple[PacketCapture, Migration] | None:
    """The capture at ``path`` (``FILE#N`` picks migration N) and the migration to
    decode, or None when ``path`` is not a capture file.  A compressed capture (gzip,
    bzip2, xz, zstd: ``tcpdump -w - | zstd``) is decompressed into an unnamed temporary
    file first: the reassembly reads packets back by file offset."""
    base, number = split_selector(path)
    try:
        if not os.path.isfile(base):
            return None
        with open(base, "rb") as f:
            head = f.read(HEAD)
    except OSError:
        return None
    opened = None
    if capture_kind(head) is None:
        compression = detect_compression(head)
        if compression is None or not _holds_capture(base, compression):
            return None
        opened = _decompressed_copy(base, compression)
    from .migrations import PacketCapture

    capture = PacketCapture(base, opened)
    return capture, capture.migration(number)


def _holds_capture(path: str, compression: str) -> bool:
    """Whether the compressed file at ``path`` starts with a capture's magic."""
    try:
        with open(path, "rb") as raw:
            first = open_decompressed(raw, compression, path).read(4)
    except Exception:  # a damaged compressed file: not recognised as a capture here
        return False
    return capture_kind(first) is not None


def _decompressed_copy(path: str, compression: str) -> BinaryIO:
    """The decompressed bytes of ``path`` in an unnamed temporary file (in TMPDIR: gone
    when closed or when the process ends), positioned at 0."""
    copy = tempfile.TemporaryFile(prefix="migstream-capture-")
    try:
        with open(path, "rb") as raw:
            reader = open_decompressed(raw, compression, path)
            while chunk := reader.read(READ_CHUNK):
                copy.write(chunk)
    except Exception as exc:  # OSError, lzma.LZMAError, zstandard.ZstdError, EOFError ...
        copy.close()
        raise UsageError(f"{path}: cannot decompress the {compression} capture: {exc}") from exc
    copy.seek(0)
    return copy
