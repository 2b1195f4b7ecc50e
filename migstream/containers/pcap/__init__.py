"""Packet captures (libpcap, pcapng) of a migration: file formats (files.py), link
layers (links.py), TCP reassembly (tcp.py) and the connections of each migration
(migrations.py).  ``open_packet_capture`` is what ``StreamSource`` calls."""

from __future__ import annotations

import os

from .files import CaptureError
from .files import capture_kind
from .migrations import AmbiguousCapture
from .migrations import CaptureChannel
from .migrations import Migration
from .migrations import PacketCapture
from .migrations import split_selector
from .tcp import CaptureGap

__all__ = [
    "AmbiguousCapture",
    "CaptureChannel",
    "CaptureError",
    "CaptureGap",
    "Migration",
    "PacketCapture",
    "open_packet_capture",
]


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
    capture = PacketCapture(base)
    return capture, capture.migration(number)
