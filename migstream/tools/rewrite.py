"""Re-emit a captured stream: same device state and configuration, guest memory
re-encoded (``transcode``), optionally patched first (``rewrite``).

The input is decoded into a temporary extract directory (sparse files); patches
are written into those files; the encoder then sends the memory around the
input's own non-RAM sections (``StreamTemplate``).  For XBZRLE the encoder needs
rounds, so the memory as it stood after several of the input's iterations is
extracted too and sent as iterations of the new stream.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..containers.sources import StreamSource
from ..containers.stream import recognise
from ..encode.encoder import encode_stream
from ..encode.mappedram_writer import encode_mapped_ram
from ..encode.memimage import MemoryImage
from ..encode.stats import RamStats
from ..errors import UsageError
from .extract import extract
from .template import StreamTemplate

MAX_ROUNDS = 8  # input iterations replayed as rounds for XBZRLE output


@dataclass(frozen=True)
class Patch:
    block: str
    offset: int
    data: bytes

    @classmethod
    def parse(cls, spec: str, *, hex_data: bool = False) -> Patch:
        """``BLOCK:OFFSET=FILE`` (or ``BLOCK:OFFSET=HEX`` with ``hex_data``).  The
        block name may itself contain colons (PCI paths): the last one counts."""
        left, eq, value = spec.partition("=")
        block, colon, offset = left.rpartition(":")
        if not eq or not colon or not block:
            raise UsageError(f"patch {spec!r}: expected BLOCK:OFFSET={'HEX' if hex_data else 'FILE'}")
        try:
            off = int(offset, 0)
        except ValueError:
            raise UsageError(f"patch {spec!r}: offset {offset!r} is not a number (e.g. 0x7e00)") from None
        if off < 0:
            raise UsageError(f"patch {spec!r}: negative offset")
        if hex_data:
            try:
                data = bytes.fromhex(re.sub(r"\s+", "", value))
            except ValueError:
                raise UsageError(f"patch {spec!r}: {value!r} is not hex") from None
        else:
            try:
                with open(value, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise UsageError(f"patch {spec!r}: cannot read {value}: {exc.strerror}") from None
        if not data:
            raise UsageError(f"patch {spec!r}: no bytes to write")
        return cls(block, off, data)


def apply_patches(directory: str, manifest: dict, patches: Sequence[Patch]) -> None:
    """Write each patch into its block file of an extract directory."""
    blocks = {b["name"]: b for b in manifest["blocks"]}
    for p in patches:
        b = blocks.get(p.block)
        if b is None:
            raise UsageError(f"patch: no RAM block {p.block!r} (blocks: {', '.join(blocks)})")
        if p.offset + len(p.data) > b["length"]:
            raise UsageError(
                f"patch: {len(p.data)} bytes at {p.offset:#x} run past the end of block "
                f"{p.block} ({b['length']:#x} bytes)"
            )
        fd = os.open(os.path.join(directory, b["file"]), os.O_WRONLY)
        try:
            done = 0
            while done < len(p.data):
                done += os.pwrite(fd, p.data[done:], p.offset + done)
        finally:
            os.close(fd)


def _extract_checked(stream: str, out: str, channels, until=None, **read) -> dict:
    result = extract(stream, out, channels=channels, until_iteration=until, **read)
    if result.error is not None:
        raise result.error
    if not result.manifest.get("complete"):
        raise UsageError(f"{stream}: the RAM in it is incomplete; refusing to re-emit it")
    return result.manifest


def transcode(
    stream: str,
    sink,
    *,
    patches: Sequence[Patch] = (),
    channels: list[str] | None = None,
    xbzrle_cache_size: int = 0,
    compress_threads: int = 0,
    compress_level: int = 1,
    workdir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    mapped_ram: bool = False,
    page_size: int | None = None,
    allow_hook: bool = False,
) -> RamStats:
    """Re-encode ``stream`` into ``sink`` (an encoder sink; with ``mapped_ram`` the
    file descriptor of a regular file, see mappedram_writer).  Returns the accounting.
    ``page_size`` and ``allow_hook`` are how the input is read (extract's)."""
    if stream == "-":
        raise UsageError("the input must be a file: it is read twice (memory, then device state)")
    read: dict[str, Any] = {"page_size": page_size, "allow_hook": allow_hook}
    with StreamSource(stream) as source:
        recognise(source)  # not a stream at all: the decoder's error, not a template's
    template = StreamTemplate.load(stream, **read)
    with tempfile.TemporaryDirectory(prefix="migstream-transcode-", dir=workdir) as work:
        dirs = []
        if xbzrle_cache_size:
            rounds = _iterations(stream, **read)
            for k in rounds:
                d = os.path.join(work, f"iter{k}")
                _extract_checked(stream, d, channels, until=k, **read)
                dirs.append(d)
        final = os.path.join(work, "final")
        manifest = _extract_checked(stream, final, channels, **read)
        apply_patches(final, manifest, list(patches))
        dirs.append(final)
        images = [MemoryImage.from_directory(d) for d in dirs]
        try:
            if mapped_ram:
                return encode_mapped_ram(images, sink, template=template, progress=progress)
            return encode_stream(
                images,
                sink,
                xbzrle_cache_size=xbzrle_cache_size,
                compress_threads=compress_threads,
                compress_level=compress_level,
                template=template,
                progress=progress,
            )
        finally:
            for img in images:
                img.close()


def _iterations(stream: str, *, page_size: int | None, allow_hook: bool) -> list[int]:
    """Which of the input's iterations become rounds: up to MAX_ROUNDS - 1, evenly
    spread, the first included (the final memory is the last round)."""
    from ..containers.stream import iter_events
    from ..containers.stream import open_decoder
    from .summary import StreamSummary

    summary = StreamSummary()
    with StreamSource(stream) as source:
        for ev in iter_events(source, open_decoder(source, page_size=page_size, allow_hook=allow_hook)):
            summary.add(ev)
    n = summary.ram_parts
    if n <= 1:
        return []
    want = min(n - 1, MAX_ROUNDS - 1)
    return sorted({1 + (i * (n - 1)) // want for i in range(want)})
