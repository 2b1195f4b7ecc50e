"""Where stream bytes come from: files (mmap'd), pipes, gzip/xz/zstd files, and
libvirt save images (``virsh save``: a header and the domain XML, then the QEMU
stream raw or compressed with gzip/bzip2/xz/lzop/zstd; see ``libvirt.py``).

A source yields chunks for ``StreamDecoder.feed``.  A chunk never changes while
anybody holds it, so events that point into them stay valid.  Regular files, plain or compressed, are read
ahead on a second thread into a few reused buffers (readahead.py), so resident
memory stays flat however large the stream; a libvirt sparse image (mapped-ram,
file offsets) is mapped and handed out as windows, released (MADV_DONTNEED) once the
decoder has moved past them.
"""

from __future__ import annotations

import io
import lzma
import mmap
import os
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO
from typing import cast

from ..errors import StreamError
from ..errors import UsageError
from ..wire import libvirt_header as gl
from .capturedir import is_capture_dir
from .capturedir import resolve_capture
from .compressed import HEAD
from .compressed import READ_CHUNK
from .compressed import detect_compression
from .compressed import open_decompressed
from .libvirt import SaveImage
from .libvirt import is_save_image
from .libvirt import read_save_image
from .pcap import open_packet_capture
from .qcow2 import Qcow2Image
from .qcow2 import Snapshot
from .qcow2 import VmStateReader
from .qcow2 import is_qcow2
from .qcow2 import split_snapshot
from .readahead import READ_AHEAD_MIN
from .readahead import ReadAhead
from .readahead import file_windows
from .readahead import reads

#: What the format field of a libvirt save image means for decompression.
_LIBVIRT_COMPRESSION = {
    gl.SaveFormat.RAW: None,
    gl.SaveFormat.GZIP: "gzip",
    gl.SaveFormat.BZIP2: "bzip2",
    gl.SaveFormat.XZ: "xz",
    gl.SaveFormat.LZOP: "lzop",
    gl.SaveFormat.ZSTD: "zstd",
    gl.SaveFormat.SPARSE: None,  # a mapped-ram stream, offsets absolute in the file
}
WINDOW = 16 << 20  # mmap window handed to the decoder (mapped-ram images, small files)
# madvise(MADV_POPULATE_READ) (Linux 5.14): map a window's pages in one call instead
# of a page fault per few pages.
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)


class StreamSource:
    """An opened stream.  ``size`` is known for plain files; ``seekable_file`` is
    an open binary file for random access (description lookup), or None.
    ``save_image`` describes a libvirt save image wrapped around the stream;
    ``stream_offset`` is where the QEMU stream starts in the (decompressed) file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.compression: str | None = None
        self.size: int | None = None
        self.seekable_file: BinaryIO | _Window | VmStateReader | None = None
        self._mmap: mmap.mmap | None = None  # a mapped-ram image, or a small plain file
        # A plain file or a raw save image: (fd, first byte, end) of the stream in it.
        self._file_range: tuple[int, int, int] | None = None
        self._reader: BinaryIO | None = None
        self._reads_ahead = False  # _reader is a decompressor over a regular file
        self._ahead: ReadAhead | None = None  # the read-ahead of chunks() under way
        self.consumed = 0  # bytes handed out so far (progress)
        self.save_image: SaveImage | None = None
        self.stream_offset = 0
        # True when the stream's own offsets (and so the decoder's) count from the
        # file's start, not the stream's: a libvirt sparse image (mapped-ram).
        self.file_offsets = False
        # A capture directory (migstream capture/tap) opens as its main channel.
        self.capture_dir: str | None = None
        self.channel_paths: list[str] = []  # its multifd channel files
        # A qcow2 image opens as one snapshot's VM state (IMAGE@SNAPSHOT selects it).
        self.qcow2: Qcow2Image | None = None
        self.snapshot: Snapshot | None = None
        self._image_file: BinaryIO | None = None
        path, self._snapshot_selector = split_snapshot(path)
        self.path = path
        if path != "-" and is_capture_dir(path):
            self.capture_dir = path
            self.path, self.channel_paths = resolve_capture(path)
        # A packet capture (pcap/pcapng; FILE#N picks migration N): its main connection
        # is the stream, its multifd connections the channels (containers/pcap/).
        self.packet_capture = found = open_packet_capture(path) if path != "-" else None
        if found is not None:
            capture, migration = found
            self.path = capture.path
            from .pcap.migrations import CaptureChannel

            self.channel_paths = [CaptureChannel(capture, c) for c in migration.multifd]
            main = capture.reader(migration.main.forward)
            self._reader = cast(BinaryIO, main)
            if main.complete:  # random access for the VMDESCRIPTION at the end
                self.size = main.size
                self.seekable_file = cast(BinaryIO, capture.reader(migration.main.forward))
            return
        self._open()

    def _open(self) -> None:
        if self.path == "-":
            raw = sys.stdin.buffer
            if not isinstance(raw, io.BufferedReader):
                raw = io.BufferedReader(raw)
            self._wrap(raw, raw.peek(HEAD)[:HEAD])
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
        head = f.read(HEAD)
        f.seek(0)
        if stat.S_ISREG(st.st_mode) and is_qcow2(head):
            self._open_qcow2(f)
            return
        if stat.S_ISREG(st.st_mode) and is_save_image(head):
            self._open_save_image(f, st.st_size)
            return
        if stat.S_ISREG(st.st_mode) and detect_compression(head) is None:
            self.size = st.st_size
            self.seekable_file = f
            self._file_range = (f.fileno(), 0, st.st_size)
            return
        self._reads_ahead = stat.S_ISREG(st.st_mode)
        self._wrap(f, head)

    def _open_qcow2(self, f: BinaryIO) -> None:
        self._image_file = f
        self.qcow2 = image = Qcow2Image(f.fileno(), self.path)
        self.snapshot = snap = image.select(self._snapshot_selector)
        self.size = snap.vm_state_size
        # Two readers (each keeps its own position): one for the description lookup, one streamed.
        self.seekable_file = VmStateReader(image, snap)
        self._reader = VmStateReader(image, snap)  # type: ignore[assignment]  # read() is all chunks() uses

    def _open_save_image(self, f: BinaryIO, file_size: int) -> None:
        self.save_image = image = read_save_image(f.read)
        self.stream_offset = image.stream_offset
        if image.format == gl.SaveFormat.SPARSE:
            # The whole file is the seekable view: page offsets are file offsets.
            self.file_offsets = True
            self.size = file_size
            self.seekable_file = f
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return
        if image.format == gl.SaveFormat.RAW:
            # Hand out the part of the file after the XML.
            self.size = max(0, file_size - image.stream_offset)
            self.seekable_file = _Window(f, image.stream_offset, self.size)
            self._file_range = (f.fileno(), image.stream_offset, max(file_size, image.stream_offset))
            return
        kind = _LIBVIRT_COMPRESSION[gl.SaveFormat(image.format)]
        assert kind is not None  # only RAW has none
        self._decompress(f, kind)

    def _wrap(self, raw: BinaryIO, head: bytes) -> None:
        kind = detect_compression(head)
        if kind is not None:
            self._decompress(raw, kind)
            # A compressed libvirt save image (e.g. a .zst of a raw-format image).
            peek = getattr(self._reader, "peek", None)
            try:
                inner = peek(HEAD)[:HEAD] if peek is not None else b""
            except Exception as exc:  # OSError, EOFError, lzma.LZMAError, zstandard.ZstdError ...
                raise UsageError(f"{self.path}: cannot read {kind} input: {exc}") from exc
            if is_save_image(inner):
                self._unwrap_save_image()
            return
        if is_save_image(head):
            self._reader = raw
            self._unwrap_save_image()
            return
        self._reader = raw

    def _unwrap_save_image(self) -> None:
        """Consume a save image's header from the current reader, then read its stream."""
        reader = self._reader
        assert reader is not None  # called once a reader is open
        self.save_image = image = read_save_image(lambda n: _read_exactly(reader, n))
        self.stream_offset = image.stream_offset
        self.file_offsets = image.format == gl.SaveFormat.SPARSE
        kind = _LIBVIRT_COMPRESSION[gl.SaveFormat(image.format)]
        if kind is not None:
            self._decompress(reader, kind)

    def _decompress(self, raw: BinaryIO, kind: str) -> None:
        self.compression = kind
        self._reader = open_decompressed(raw, kind, self.path)

    def peek(self, n: int) -> tuple[bytes, bool]:
        """Up to ``n`` first bytes of the stream, without consuming them, and whether
        they are all there is (False: more may follow, or the reader could not tell)."""
        if self._file_range is not None:
            fd, start, end = self._file_range
            head = os.pread(fd, min(n, end - start), start)
            return head, len(head) < n
        if self._mmap is not None:
            head = bytes(self._mmap[self.stream_offset : self.stream_offset + n])
            return head, len(head) < n
        if self._reader is None:
            return b"", self.size == 0
        peek = getattr(self._reader, "peek", None)
        if peek is None:
            return b"", False
        try:
            head = bytes(peek(n)[:n])
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
        except Exception as exc:  # zstandard.ZstdError
            raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
        return head, not head

    def chunks(self) -> Iterator[memoryview | bytes]:
        if self._file_range is not None:
            fd, start, end = self._file_range
            if end - start >= READ_AHEAD_MIN:
                yield from self._windows_read_ahead(fd, start, end)
                return
            if self._mmap is None and end > start:
                self._mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        if self._mmap is not None:
            mm = self._mmap
            view = memoryview(mm)[self.stream_offset :]
            prev = None
            for start in range(0, len(view), WINDOW):
                try:
                    _advise(mm, _MADV_POPULATE_READ, self.stream_offset + start, WINDOW)
                except OSError:  # an older kernel: pages fault in one by one instead
                    pass
                yield view[start : start + WINDOW]
                self.consumed = min(len(view), start + WINDOW)
                if prev is not None:
                    # The decoder has moved on past the previous window (file offsets:
                    # a save image's stream starts inside the map).
                    _advise(mm, mmap.MADV_DONTNEED, self.stream_offset + prev, WINDOW)
                prev = start
            return
        if self._reader is None:
            return
        reader = self._reader
        if self._reads_ahead:
            self._ahead = ahead = reads(reader.read, READ_CHUNK)
            read = lambda _size: next(ahead)  # noqa: E731 - the same calls as reader.read, read ahead
        else:
            read = reader.read
        try:
            yield from self._read_all(read)
        finally:
            if self._reads_ahead:
                ahead.close()

    def _windows_read_ahead(self, fd: int, start: int, end: int) -> Iterator[memoryview]:
        self._ahead = ahead = file_windows(fd, start, end)
        try:
            for chunk in ahead:
                yield chunk
                self.consumed += len(chunk)
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read: {exc.strerror}") from exc
        finally:
            ahead.close()

    def _read_all(self, read) -> Iterator[bytes]:
        while True:
            try:
                data = read(READ_CHUNK)
            except StreamError:  # a gap in a packet capture's connection (pcap.CaptureGap)
                raise
            except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
                raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
            except Exception as exc:  # zstandard.ZstdError
                raise UsageError(f"{self.path}: cannot read {self.compression or ''} input: {exc}") from exc
            if not data:
                return
            self.consumed += len(data)
            yield data

    def close(self) -> None:
        if self._ahead is not None:  # before the files it reads are closed
            self._ahead.close()
        # Views into the map may still be alive (events); the map is closed by GC then.
        self._mmap = None
        if self.seekable_file is not None:
            self.seekable_file.close()
        if self._reader is not None and self.path != "-":
            try:
                self._reader.close()
            except Exception:
                pass
        if self._image_file is not None:
            self._image_file.close()

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_exactly(reader: BinaryIO, n: int) -> bytes:
    parts = []
    while n > 0:
        b = reader.read(n)
        if not b:
            break
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


class _Window:
    """A read-only seekable view of [start, start+size) of a file: what the
    description lookup needs of the QEMU stream inside a raw save image."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        self._f, self._start, self._size = f, start, size

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(self._start + pos) - self._start

    def read(self, n: int = -1) -> bytes:
        left = self._size - (self._f.tell() - self._start)
        return self._f.read(left if n < 0 else min(n, left))

    def close(self) -> None:
        self._f.close()


def _advise(mm: mmap.mmap, advice: int, start: int, length: int) -> None:
    """madvise the map's pages from the one holding ``start`` for ``length`` bytes
    (madvise wants a page-aligned start)."""
    at = start // mmap.PAGESIZE * mmap.PAGESIZE
    length = min(length, len(mm) - at)
    if length > 0:
        mm.madvise(advice, at, length)
