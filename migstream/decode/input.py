"""The decoder's input buffer: fed chunks, parsed in place, joined only when an
element straddles two of them; ``_need`` makes bytes available (or raises
``NeedData``) and keeps reads inside the enclosing PACKAGED window.

Small readers of fixed-size and length-prefixed fields and of rare, variable-size
elements (parsed with the grammar itself) live here too: they are the only ways
the section readers take bytes from the buffer.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from construct import StreamError as ConstructStreamError

from ..errors import StreamError
from ..errors import TruncatedStream
from ..wire.fastpath import IDSTR_LENGTH


class NeedData(Exception):
    """The current element is not complete in the buffer (caught by the decoder,
    which parses the element again once more input is fed)."""


class InputBuffer:
    """Fed bytes, the parse position and the stream offsets that go with it."""

    def __init__(self) -> None:
        self._buf: Any = memoryview(b"")  # the bytes being parsed
        self._pos = 0  # parse position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._elem = 0  # start in _buf of the element being parsed
        self._chunk: Any = None  # the first fed chunk that _buf does not reach yet (a memoryview)
        self._chunk_base = 0  # its stream offset
        self._chunk_used = 0  # how much of it was joined into _buf
        # Chunks fed after it, joined only when an element needs them: joining on
        # every feed would copy a large element once per chunk (quadratic time).
        self._queued: list[memoryview] = []
        self._queued_bytes = 0
        self._retry: tuple[int, int] = (-1, 0)  # (offset, input then) of a grammar parse that needed more
        self._eof = False
        # Open PACKAGED commands, innermost last: (end offset, length).  No element
        # may be read past the innermost end.
        self._packages: list[tuple[int, int]] = []

    def start_at(self, offset: int) -> None:
        """Number the input from ``offset`` instead of 0 (before the first feed): a
        stream inside a container whose own offsets are file offsets (mapped-ram in
        a libvirt sparse save image)."""
        if len(self._buf) or self._chunk is not None or self._base:
            raise ValueError("start_at() after input was fed")
        self._base = offset

    def _where(self) -> str | None:
        """The section being read, for error messages (the decoder knows it)."""
        return None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet decoded."""
        return self._base + self._pos

    def feed(self, data) -> None:
        """Add input; ``b""`` marks the end of input.

        The chunk is parsed in place: keep it unchanged until its events are used.
        """
        if not len(data):
            self._eof = True
            return
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self._rebase()
        if self._chunk is not None:
            # Fed again before the last chunk was used up: queue this one.
            self._queued.append(view)
            self._queued_bytes += len(view)
        elif self._pos >= len(self._buf):
            self._base += len(self._buf)
            self._buf, self._pos, self._elem = view, 0, 0
        else:
            self._chunk, self._chunk_base, self._chunk_used = view, self._base + len(self._buf), 0

    def _pending(self) -> int:
        """Fed bytes that _buf does not hold yet."""
        if self._chunk is None:
            return 0
        return len(self._chunk) - self._chunk_used + self._queued_bytes

    def _next_chunk(self) -> None:
        # The current chunk is used up (all of it is in _buf, or _buf moved onto it):
        # the next queued one takes its place.
        self._chunk_base += len(self._chunk)
        self._chunk_used = 0
        if self._queued:
            self._chunk = self._queued.pop(0)
            self._queued_bytes -= len(self._chunk)
        else:
            self._chunk = None

    def _grow(self) -> bool:
        """Join the current element's bytes with more of the fed chunks (a copy of
        the element only).  False when there is nothing more to join."""
        if self._chunk is not None and self._chunk_used >= len(self._chunk):
            self._next_chunk()
        chunk = self._chunk
        if chunk is None:
            return False
        tail = self._buf[self._elem :]
        take = max(65536, 2 * len(tail))  # geometric growth: linear copying in total
        pieces = [tail]
        while take > 0 and self._chunk is not None:
            piece = self._chunk[self._chunk_used : self._chunk_used + take]
            pieces.append(piece)
            self._chunk_used += len(piece)
            take -= len(piece)
            if take > 0 and self._queued:
                self._next_chunk()
            else:
                break
        self._base += self._elem
        self._pos -= self._elem
        self._elem = 0
        self._buf = memoryview(b"".join(pieces))
        return True

    def _rebase(self) -> None:
        # At an element boundary past the joined bytes: parse the chunk in place again.
        if self._chunk is not None and self.offset >= self._chunk_base:
            self._pos = self.offset - self._chunk_base
            self._base = self._chunk_base
            self._buf = self._chunk
            self._chunk_used = len(self._chunk)
            self._next_chunk()
            self._elem = self._pos

    def _need(self, n: int) -> None:
        """Make sure n bytes are available at _pos, within the current package."""
        if self._packages:
            end = self._packages[-1][0]
            if self._base + self._pos + n > end:
                raise StreamError(
                    f"element runs past the end of the PACKAGED data at 0x{end:x}",
                    self.offset,
                    section=self._where(),
                )
        while self._pos + n > len(self._buf):
            if not self._eof and self._pos + n > len(self._buf) + self._pending():
                raise NeedData  # wait for enough input before joining anything
            if not self._grow():
                if self._eof:
                    raise TruncatedStream(
                        f"stream ends inside an element (needs {n} bytes, {len(self._buf) - self._pos} left)",
                        self.offset,
                        section=self._where(),
                    )
                raise NeedData

    def _u8(self) -> int:
        self._need(1)
        v = self._buf[self._pos]
        self._pos += 1
        return v

    def _unpack(self, fmt: struct.Struct) -> int:
        self._need(fmt.size)
        (v,) = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return v

    def _idstr(self) -> str:
        n = self._unpack(IDSTR_LENGTH)
        self._need(n)
        s = bytes(self._buf[self._pos : self._pos + n]).decode("latin-1")
        self._pos += n
        return s

    def _construct(self, con, limit: int, **params) -> Any:
        """Parse a rare, variable-size element with the grammar itself."""
        if self._packages:
            limit = min(limit, self._packages[-1][0] - self.offset)
        avail = len(self._buf) - self._pos
        if avail < limit and not self._eof:
            # An earlier attempt at this element needed more input: try again only
            # once the input has doubled, so small feeds cost linear time in total.
            have = avail + self._pending()
            if self._retry[0] == self.offset and have < 2 * self._retry[1]:
                raise NeedData
            self._retry = (self.offset, have)
        while avail < limit and self._grow():  # at EOF too: input already fed must be joined
            avail = len(self._buf) - self._pos
        view = self._buf[self._pos : self._pos + min(avail, limit)]
        stream = io.BytesIO(view)
        try:
            obj = con.parse_stream(stream, **params)
        except ConstructStreamError as exc:
            if avail < limit and not self._eof:
                raise NeedData from exc
            raise TruncatedStream(f"stream ends inside an element ({exc.__class__.__name__})", self.offset) from exc
        self._pos += stream.tell()
        return obj
