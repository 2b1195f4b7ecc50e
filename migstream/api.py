"""The Python entry point: ``migstream.open(path)`` opens what the command line opens.

One object per capture, with the three things people ask of one: its events
(``events()``), what ``migstream info --json`` prints (``info()``) and the guest
RAM it yields (``ram()``).  Everything else in migstream stays reachable for more
(docs/library.md); this module only joins the containers, the decoder, the multifd
channels and the RAM image the way the CLI does, so that a script does not have to.

``import migstream`` does not import this module: ``migstream.open`` is resolved on
first use (migstream/__init__.py), and the RAM image (numpy) only when ``ram()`` is
called.  Documented with examples in docs/api.md (run by tests/unit/test_api.py).
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .containers.multifd import with_channels
from .containers.qcow2 import snapshot_path
from .containers.sources import StreamSource
from .containers.stream import iter_events
from .containers.stream import open_decoder
from .decode.decoder import StreamDecoder
from .tools.summary import info_document

PathLike = str | os.PathLike[str]


class Capture:
    """A migration stream as the CLI opens it: a file (plain, .gz/.xz/.zst/.bz2), a
    libvirt save image, a capture directory (with its multifd channel files), or
    ``"-"`` for stdin (then only one of ``events()``, ``info()``, ``ram()`` can read it).

    ``channels`` are multifd channel files (any order); ``page_size`` overrides the
    stream's (``--page-size``); ``rdma`` accepts RDMA HOOK records (``--rdma``);
    ``snapshot`` names an internal snapshot of a qcow2 image.  Each call of
    ``events()`` or ``info()`` decodes the stream again from its start."""

    def __init__(
        self,
        path: PathLike,
        channels: Iterable[PathLike] = (),
        snapshot: str | None = None,
        page_size: int | None = None,
        rdma: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.channels = [os.fspath(c) for c in channels]
        self.snapshot = snapshot
        self.page_size = page_size
        self.rdma = rdma
        #: The decoder of the last ``events()``/``info()``/``ram()`` run: its
        #: ``warnings`` (offset, message), ``ram_complete``, ``page_size``.
        self.decoder: StreamDecoder | None = None
        self._ram: dict[str, mmap.mmap | bytes] | None = None
        self._manifest: dict[str, Any] | None = None
        self._tempdir: str | None = None
        # Fail now, like the CLI does before decoding, on what cannot be opened.
        self._source().close()

    def _source(self) -> StreamSource:
        """The one place where the capture is opened (every method comes here)."""
        return StreamSource(snapshot_path(self.path, self.snapshot))

    def _decoder(self, source: StreamSource) -> StreamDecoder:
        self.decoder = open_decoder(source, page_size=self.page_size, allow_hook=self.rdma)
        return self.decoder

    def events(self) -> Iterator[Any]:
        """Every event the decoder emits (``migstream.events``: each with its byte
        ``offset``), multifd channel packets inserted at the main stream's sync points,
        as ``migstream records`` lists them.  Raises ``StreamError`` (with ``offset``)
        at the first fault, after the events decoded before it."""
        with self._source() as source:
            decoder = self._decoder(source)
            yield from with_channels(iter_events(source, decoder), self.channels or source.channel_paths, decoder)

    def info(self) -> dict[str, Any]:
        """The document ``migstream info --json`` prints.  A stream error does not
        raise: the document's ``error`` object says what and where (``info`` then exits 1)."""
        with self._source() as source:
            doc, _error = info_document(source, self._decoder(source), self.channels)
            return doc

    def ram(self, directory: PathLike | None = None) -> dict[str, mmap.mmap | bytes]:
        """Block name -> the block's final RAM, as ``migstream extract`` writes it:
        read-only memory maps of sparse files (nothing is read into memory), in a
        temporary directory removed by ``close()``, or in ``directory`` (kept; it
        then also holds manifest.json).  A block of length 0 is ``b""``.  Raises
        ``StreamError`` if the stream has a fault (``extract`` keeps the part before
        it; use ``directory`` and the CLI for that).  Decoded once; later calls
        return the same maps."""
        if self._ram is not None:
            return self._ram
        from .tools.extract import extract  # numpy and the RAM image: only here

        if directory is None:
            self._tempdir = tempfile.mkdtemp(prefix="migstream-ram-")
            where = self._tempdir
        else:
            where = os.fspath(directory)
        source = self._source()
        result = extract(source, where, page_size=self.page_size, allow_hook=self.rdma, channels=self.channels)
        if result.error is not None:
            raise result.error
        self._manifest = result.manifest
        ram: dict[str, mmap.mmap | bytes] = {}
        for block in result.manifest["blocks"]:
            if not block["length"]:
                ram[block["name"]] = b""
                continue
            fd = os.open(Path(where) / block["file"], os.O_RDONLY)  # os.open: this module defines open()
            try:
                ram[block["name"]] = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        self._ram = ram
        return ram

    @property
    def manifest(self) -> dict[str, Any] | None:
        """After ``ram()``: the manifest ``extract`` writes (``complete``, ``warnings``, blocks)."""
        return self._manifest

    def close(self) -> None:
        """Unmap the RAM blocks and remove the temporary directory of ``ram()``."""
        for m in (self._ram or {}).values():
            if isinstance(m, mmap.mmap):
                try:
                    m.close()
                except BufferError:  # a view of it is still alive: unmapped when collected
                    pass
        self._ram = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<migstream.Capture {self.path!r}>"


def open(  # noqa: A001 - migstream.open, like gzip.open and tarfile.open
    path: PathLike,
    channels: Iterable[PathLike] = (),
    snapshot: str | None = None,
    page_size: int | None = None,
    rdma: bool = False,
) -> Capture:
    """Open a capture: ``with migstream.open("vm.mig.zst") as cap: cap.info()``.
    Raises ``UsageError`` when ``path`` cannot be opened."""
    return Capture(path, channels, snapshot=snapshot, page_size=page_size, rdma=rdma)


__all__ = ["Capture", "open"]
