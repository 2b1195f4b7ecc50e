"""Where stream bytes come from: files (mmap'd), pipes, gzip/xz/zstd files.

A source yields chunks for ``StreamDecoder.feed``.  Chunks are never reused, so
events that point into them stay valid.  Regular files are mapped and handed out
as windows; once the decoder has moved past a window its pages are released
(MADV_DONTNEED), so resident memory stays flat however large the stream.
"""

from __future__ import annotations

import gzip
import io
import lzma
import mmap
import os
import stat
import sys
from typing import BinaryIO, Iterator

from .capturedir import is_capture_dir, resolve_capture
from .errors import UsageError

_MAGICS = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
WINDOW = 16 << 20  # mmap window handed to the decoder
READ_CHUNK = 4 << 20  # read size for pipes and decompressors


def detect_compression(head: bytes) -> str | None:
    for magic, name in _MAGICS.items():
        if head.startswith(magic):
            return name
    return None


class StreamSource:
    """An opened stream.  ``size`` is known for plain files; ``seekable_file`` is
    an open binary file for random access (description lookup), or None."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.compression: str | None = None
        self.size: int | None = None
        self.seekable_file: BinaryIO | None = None
        self._mmap: mmap.mmap | None = None
        self._reader: BinaryIO | None = None
        self.consumed = 0  # bytes handed out so far (progress)
        # A capture directory (migstream capture/tap) opens as its main channel.
        self.capture_dir: str | None = None
        self.channel_paths: list[str] = []  # its multifd / postcopy-preempt channel files
        if path != "-" and is_capture_dir(path):
            self.capture_dir = path
            self.path, self.channel_paths = resolve_capture(path)
        self._open()

    def _open(self) -> None:
        if self.path == "-":
            raw = sys.stdin.buffer
            if not isinstance(raw, io.BufferedReader):
                raw = io.BufferedReader(raw)  # type: ignore[arg-type]
            self._wrap(raw, raw.peek(6)[:6])
            return
        if os.path.isdir(self.path):
            raise UsageError(f"{self.path} is a directory, and not a capture (no capture.json)")
        try:
            f = open(self.path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot open {self.path}: {exc.strerror}") from exc
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{self.path} is a directory")
        head = f.read(6)
        f.seek(0)
        if stat.S_ISREG(st.st_mode) and detect_compression(head) is None:
            self.size = st.st_size
            self.seekable_file = f
            if st.st_size:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return
        self._wrap(f, head)

    def _wrap(self, raw: BinaryIO, head: bytes) -> None:
        kind = detect_compression(head)
        self.compression = kind
        if kind == "gzip":
            self._reader = gzip.GzipFile(fileobj=raw)
        elif kind == "xz":
            self._reader = lzma.LZMAFile(raw)
        elif kind == "zstd":
            import zstandard

            self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            self._reader = raw

    def chunks(self) -> Iterator[memoryview | bytes]:
        if self._mmap is not None:
            mm = self._mmap
            view = memoryview(mm)
            prev = None
            for start in range(0, len(mm), WINDOW):
                yield view[start:start + WINDOW]
                self.consumed = min(len(mm), start + WINDOW)
                if prev is not None:
                    # The decoder has moved on past the previous window.
                    mm.madvise(mmap.MADV_DONTNEED, prev, WINDOW)
                prev = start
            return
        if self._reader is None:
            return
        while True:
            try:
                data = self._reader.read(READ_CHUNK)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
            except Exception as exc:  # zstandard.ZstdError
                raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
            if not data:
                return
            self.consumed += len(data)
            yield data

    def close(self) -> None:
        # Views into the map may still be alive (events); the map is closed by GC then.
        self._mmap = None
        if self.seekable_file is not None:
            self.seekable_file.close()
        if self._reader is not None and self.path != "-":
            try:
                self._reader.close()
            except Exception:
                pass

    def __enter__(self) -> "StreamSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
