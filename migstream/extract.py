"""Rebuild a stream's RAM blocks in a directory (the ``extract`` job)."""

from __future__ import annotations

from typing import Callable

from .errors import StreamError
from .events import MappedRamBlock, MultifdPacket, PageRecord, PageRun, RamBlockList
from .multifd import with_channels
from .ramimage import RamImage
from .sources import StreamSource
from .stream import iter_events, open_decoder


class ExtractResult:
    def __init__(self, manifest: dict, error: StreamError | None, warnings: list) -> None:
        self.manifest = manifest
        self.error = error
        self.warnings = warnings


def extract(stream: str, directory: str, *, blocks: set[str] | None = None, page_size: int | None = None,
            allow_hook: bool = False, progress: Callable[[int], None] | None = None,
            channels: list[str] | None = None) -> ExtractResult:
    """Decode ``stream`` (plus its multifd ``channels`` files) into ``directory``.  A stream error does not raise: what was
    decoded before it is kept and the manifest says ``"complete": false``."""
    with StreamSource(stream) as source:
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        image = None
        error = None
        try:
            for ev in with_channels(iter_events(source, decoder, progress), channels, decoder):
                if image is None and isinstance(ev, (RamBlockList, PageRecord, PageRun, MappedRamBlock, MultifdPacket)):
                    image = RamImage(directory, decoder.page_size, only=blocks)
                if image is not None:
                    image.apply(ev)
        except StreamError as exc:
            error = exc
        if image is None:
            image = RamImage(directory, decoder.page_size or 4096, only=blocks)
        machine = decoder.configuration.machine if decoder.configuration else None
        manifest = image.close(machine=machine, complete=error is None and decoder.ram_complete,
                               error=str(error) if error else None,
                               extra={"page_size_source": decoder.page_size_source})
        return ExtractResult(manifest, error, list(decoder.warnings))
