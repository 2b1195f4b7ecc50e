"""Rebuild a stream's RAM blocks in a directory (the ``extract`` job)."""

from __future__ import annotations

from typing import Callable

from .errors import StreamError
from .events import PageRecord, PageRun, RamBlockList
from .ramimage import RamImage
from .sources import StreamSource
from .stream import iter_events, open_decoder


class ExtractResult:
    def __init__(self, manifest: dict, error: StreamError | None, warnings: list) -> None:
        self.manifest = manifest
        self.error = error
        self.warnings = warnings


def extract(stream: str, directory: str, *, blocks: set[str] | None = None, page_size: int | None = None,
            allow_hook: bool = False, progress: Callable[[int], None] | None = None) -> ExtractResult:
    """Decode ``stream`` into ``directory``.  A stream error does not raise: what was
    decoded before it is kept and the manifest says ``"complete": false``."""
    with StreamSource(stream) as source:
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        image = None
        error = None
        try:
            for ev in iter_events(source, decoder, progress):
                if image is None and isinstance(ev, (RamBlockList, PageRecord, PageRun)):
                    image = RamImage(directory, decoder.page_size, only=blocks)
                if image is not None:
                    image.apply(ev)
        except StreamError as exc:
            error = exc
        if image is None:
            image = RamImage(directory, decoder.page_size or 4096, only=blocks)
        machine = decoder.configuration.machine if decoder.configuration else None
        extra = {"page_size_source": decoder.page_size_source}
        warnings = list(decoder.warnings)
        saved = source.save_image
        if saved is not None:
            extra["libvirt"] = saved.as_dict()
            if not saved.complete:
                warnings.append((0, "libvirt save image is incomplete (LibvirtQemudPart): the save never "
                                    "finished"))
        complete = error is None and decoder.ram_complete and (saved is None or saved.complete)
        manifest = image.close(machine=machine, complete=complete, error=str(error) if error else None,
                               extra=extra)
        return ExtractResult(manifest, error, warnings)
