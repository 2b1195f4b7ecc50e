"""Packet captures (libpcap, pcapng) of a migration: file formats (files.py), link
layers (links.py), TCP reassembly (tcp.py) and the connections of each migration
(migrations.py).  ``open_packet_capture`` is what ``StreamSource`` calls: for a file
that is not a capture it imports nothing beyond files.py (every command opens its input
through it; the reassembly modules are ~5 ms of start-up)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

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
    decode, or None when ``path`` is not a capture file."""
    base, number = split_selector(path)
    try:
        if not os.path.isfile(base):
            return None
        with open(base, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if capture_kind(head) is None:
        return None
    from .migrations import PacketCapture

    capture = PacketCapture(base)
    return capture, capture.migration(number)
