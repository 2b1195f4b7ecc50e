"""Decoding a migration stream while it is being recorded (``tap --live``).

``LiveDecoder`` follows a growing file (the main channel of a capture): every
``poll()`` reads what was appended since the last one, feeds it to a
``StreamDecoder`` and adds the events to a ``StreamSummary``.  No terminal code:
front ends render ``status()``.
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from ..decode.decoder import StreamDecoder
from ..errors import StreamError
from ..events import NEED_DATA
from ..tools.summary import StreamSummary

READ_CHUNK = 8 << 20


class LiveDecoder:
    def __init__(self, path_fn, *, page_size: int | None = None) -> None:
        """``path_fn()`` gives the file to follow, or None while it does not exist yet."""
        self._path_fn = path_fn
        self._file: BinaryIO | None = None
        self.decoder = StreamDecoder(page_size=page_size)
        self.summary = StreamSummary()
        self.error: StreamError | None = None
        self.done = False  # the decoder reached the end of the stream
        self.decoded_bytes = 0

    def poll(self, final: bool = False) -> int:
        """Decode what was appended; ``final`` once the writer has closed the file.
        Returns the number of new bytes read."""
        if self.error is not None or self.done:
            return 0
        if self._file is None:
            path = self._path_fn()
            if path is None or not os.path.exists(path):
                return 0
            self._file = open(path, "rb")
        got = 0
        while True:
            data = self._file.read(READ_CHUNK)
            if not data:
                break
            got += len(data)
            self._feed(data)
            if self.error is not None or self.done:
                break
        if final and self.error is None and not self.done:
            self._feed(b"")
        return got

    def _feed(self, data: bytes) -> None:
        dec = self.decoder
        dec.feed(data)
        add = self.summary.add
        try:
            while True:
                ev = dec.next_event()
                if ev is NEED_DATA:
                    break
                if ev is None:
                    self.done = True
                    break
                add(ev)
        except StreamError as exc:
            self.error = exc
        self.decoded_bytes = dec.offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def status(self) -> dict:
        """Iterations (RAM PART sections), records by encoding, bytes decoded, error."""
        s = self.summary
        return {
            "machine": s.configuration.machine if s.configuration else None,
            "ram_iterations": s.ram_parts,
            "records": {k: s.records[k] for k in s.records},
            "commands": dict(s.commands),
            "decoded_bytes": self.decoded_bytes,
            "eof": s.eof,
            "error": str(self.error) if self.error else None,
        }


class Throughput:
    """Bytes per second over a sliding window of samples."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def add(self, total_bytes: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.pop(0)
        t0, b0 = self._samples[0]
        return (total_bytes - b0) / (now - t0) if now > t0 else 0.0
