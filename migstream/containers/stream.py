"""Driving a decoder from a source: the loop every front end uses."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator

from ..decode.decoder import StreamDecoder
from ..decode.description import load_description
from ..errors import TruncatedStream
from ..events import NEED_DATA
from .sources import StreamSource

#: Magic and version words: what ``recognise`` looks at.
FILE_HEADER_BYTES = 8


def open_decoder(
    source: StreamSource, *, page_size: int | None = None, use_description: bool = True, allow_hook: bool = False
) -> StreamDecoder:
    """A decoder for ``source``; for seekable files the VMDESCRIPTION is read first
    (it frames device sections and gives the page size).  Raises StreamError here,
    before any event, when the input is not a migration stream at all (see
    ``recognise``), so that no command writes output for a text file."""
    recognise(source)
    description = None
    if use_description and source.seekable_file is not None and source.size:
        found = load_description(source.seekable_file, source.size)
        if found:
            description = found[1]
    decoder = StreamDecoder(
        page_size=page_size,
        description=description,
        allow_hook=allow_hook,
        count_trailing=source.qcow2 is None,  # a snapshot's state size is exact: nothing is counted past it
    )
    if source.file_offsets:
        decoder.start_at(source.stream_offset)
    return decoder


def recognise(source: StreamSource) -> None:
    """Raise the decoder's own error when the first bytes of ``source`` are not a
    QEMU file header (magic "QEVM" and a supported version) or the input is empty."""
    head, whole = source.peek(FILE_HEADER_BYTES)
    if not head and not whole:
        return  # a reader that cannot peek (a packet capture's connection): the decoder checks later
    probe = StreamDecoder()
    if head:  # feed(b"") means end of input, so an empty peek is fed only when it is the whole input
        probe.feed(head)
    if whole:
        probe.feed(b"")
    probe.next_event()  # the FileHeader, NEED_DATA (a reader that peeked short), or the error


def iter_events(
    source: StreamSource, decoder: StreamDecoder, progress: Callable[[int], None] | None = None
) -> Iterator:
    """Every event of the stream, in order.  Raises StreamError at the first fault;
    a stream that ends early raises TruncatedStream."""
    for chunk in source.chunks():
        decoder.feed(chunk)
        while True:
            ev = decoder.next_event()
            if ev is NEED_DATA:
                break
            if ev is None:
                return
            yield ev
        if progress is not None:
            progress(source.consumed)
    decoder.feed(b"")
    while True:
        ev = decoder.next_event()
        if ev is None:
            return
        if ev is NEED_DATA:  # pragma: no cover - feed(b"") makes every read final
            raise TruncatedStream("stream ends early", decoder.offset)
        yield ev
