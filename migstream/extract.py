"""Rebuild a stream's RAM blocks in a directory (the ``extract`` job)."""

from __future__ import annotations

from typing import Callable

from .errors import StreamError
from .events import MappedRamBlock, MultifdPacket, PageRecord, PageRun, RamBlockList, SectionStart
from .grammar import SectionType
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
            until_iteration: int | None = None, channels: list[str] | None = None) -> ExtractResult:
    """Decode ``stream`` (plus its multifd ``channels`` files) into ``directory``.  A
    stream error does not raise: what was decoded before it is kept and the manifest
    says ``"complete": false``.
    ``until_iteration=N`` stops before the RAM section that follows the N-th RAM
    PART section: the memory as the destination held it after N iterations."""
    with StreamSource(stream) as source:
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        image = None
        error = None
        parts = 0
        stopped = False
        try:
            for ev in with_channels(iter_events(source, decoder, progress), channels, decoder):
                if until_iteration is not None and type(ev) is SectionStart and ev.idstr == "ram" \
                        and ev.type in (SectionType.PART, SectionType.END):
                    if parts == until_iteration:
                        stopped = True
                        break
                    parts += ev.type == SectionType.PART
                if image is None and isinstance(ev, (RamBlockList, PageRecord, PageRun, MappedRamBlock,
                                                     MultifdPacket)):
                    image = RamImage(directory, decoder.page_size, only=blocks)
                if image is not None:
                    image.apply(ev)
        except StreamError as exc:
            error = exc
        if image is None:
            image = RamImage(directory, decoder.page_size or 4096, only=blocks)
        machine = decoder.configuration.machine if decoder.configuration else None
        extra = {"page_size_source": decoder.page_size_source}
        if until_iteration is not None:
            extra["until_iteration"] = until_iteration
            if not stopped and error is None:
                error = StreamError(f"the stream has only {parts} RAM iterations (PART sections), "
                                    f"not {until_iteration}", decoder.offset, section="ram")
        if decoder.configuration is not None:
            extra["capabilities"] = list(decoder.configuration.capabilities)
            extra["target_page_bits"] = decoder.configuration.target_page_bits
        complete = error is None and (stopped or decoder.ram_complete)
        manifest = image.close(machine=machine, complete=complete, error=str(error) if error else None,
                               extra=extra)
        return ExtractResult(manifest, error, list(decoder.warnings))
