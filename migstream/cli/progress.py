"""Progress lines on stderr: decoding (bytes of the stream) and encoding (pages)."""

from __future__ import annotations

import os
import sys
import time

from ..containers.compressed import file_compression


def stream_size(path: str) -> int | None:
    """The size of a stream file that is read as it is (None: a pipe, a compressed
    file, unreadable), for progress shares of commands that open the stream themselves."""
    try:
        return None if file_compression(path) is not None else os.path.getsize(path)
    except OSError:
        return None


class StatusLine:
    """A throttled one-line status on stderr: shown on a terminal (or when asked),
    redrawn at most every 0.2 s, cleared at the end."""

    INTERVAL = 0.2

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0

    def due(self, force: bool = False) -> bool:
        """Whether to draw now (then the next one waits INTERVAL)."""
        if not self.enabled:
            return False
        now = time.monotonic()
        if not force and now - self._last < self.INTERVAL:
            return False
        self._last = now
        return True

    def show(self, text: str) -> None:
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class DecodeProgress(StatusLine):
    """Bytes of the stream decoded so far (and the share of it, when its size is known)."""

    def __init__(self, size: int | None, enabled: bool | None) -> None:
        super().__init__(enabled)
        self.size = size
        self._start = time.monotonic()

    def __call__(self, consumed: int) -> None:
        if not self.due():
            return
        mib = consumed / (1 << 20)
        rate = mib / max(self._last - self._start, 1e-6)
        if self.size:
            pct = 100.0 * consumed / self.size
            self.show(f"{pct:5.1f}%  {mib:,.0f} MiB  {rate:,.0f} MiB/s ")
        else:
            self.show(f"{mib:,.0f} MiB  {rate:,.0f} MiB/s ")


class EncodeProgress(StatusLine):
    """Pages encoded so far, of all."""

    def __call__(self, done: int, total: int) -> None:
        if self.due(force=done >= total):
            pct = 100.0 * done / total if total else 100.0
            self.show(f"{pct:5.1f}%  {done:,} / {total:,} pages ")
