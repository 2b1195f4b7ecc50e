"""Driving a decoder from a source: the loop every front end uses."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator

from ..decode.decoder import StreamDecoder
from ..decode.description import load_description
from ..errors import TruncatedStream
from ..events import NEED_DATA
from .sources import StreamSource


def open_decoder(
    source: StreamSource, *, page_size: int | None = None, use_description: bool = True, allow_hook: bool = False
) -> StreamDecoder:
    """A decoder for ``source``; for seekable files the VMDESCRIPTION is read first
    (it frames device sections and gives the page size)."""
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
