"""``migstream encode``: memory images -> a stream QEMU loads with -incoming."""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import StatusLine, _run, app
from .errors import UsageError


def parse_size(text: str) -> int:
    """``67108864``, ``64M``, ``64MiB``, ``1G`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"not a size: {text!r} (e.g. 67108864, 64M, 1G)")
    return int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))


class _EncodeProgress(StatusLine):
    """Pages encoded so far, of all."""

    def __call__(self, done: int, total: int) -> None:
        if self.due(force=done >= total):
            pct = 100.0 * done / total if total else 100.0
            self.show(f"{pct:5.1f}%  {done:,} / {total:,} pages ")


@contextmanager
def output_fd(output: str):
    """A file descriptor for OUTPUT (``-``: stdout, never a terminal).  A file is
    written beside the target and renamed when the block succeeds, so a failed run
    never leaves a file that looks like a complete stream."""
    if output == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a binary stream to a terminal (use -o FILE or a pipe)")
        sys.stdout.flush()
        yield sys.stdout.fileno()
        return
    tmp = f"{output}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, output)


def report_stats(stats, output: str, *, mapped_ram: bool, stats_json, json_out: bool) -> None:
    """The accounting at the end of a run: --stats-json file, then JSON or text on
    stdout (stderr when the stream itself went to stdout)."""
    doc = stats.as_dict()
    if mapped_ram:
        doc["mapped-ram"] = file_allocation(output)
    if stats_json:
        stats_json.write_text(json.dumps(doc, indent=2) + "\n")
    out = sys.stderr if output == "-" else sys.stdout
    if json_out:
        print(json.dumps(doc, indent=2), file=out)
    else:
        _print_stats(doc, out)


def _print_stats(doc: dict, out) -> None:
    ram = doc["ram"]
    lines = [
        f"transferred      {ram['transferred']:,} bytes (stream {doc['stream-bytes']:,} bytes)",
        f"pages            normal {ram['normal']:,} ({ram['normal-bytes']:,} bytes), duplicate (zero) "
        f"{ram['duplicate']:,}",
        f"iterations       {doc['iterations']} (PART sections {doc['part-sections']}), "
        f"dirty-sync-count {ram['dirty-sync-count']}",
    ]
    if "xbzrle-cache" in doc:
        x = doc["xbzrle-cache"]
        lines.append(f"xbzrle           pages {x['pages']:,}, bytes {x['bytes']:,}, cache-miss {x['cache-miss']:,}, "
                     f"cache-miss-rate {x['cache-miss-rate']:.4f}, overflow {x['overflow']:,}")
    if "compression" in doc:
        c = doc["compression"]
        lines.append(f"compression      pages {c['pages']:,}, compressed-size {c['compressed-size']:,}, "
                     f"rate {c['compression-rate']:.2f}")
    if "mapped-ram" in doc:
        f = doc["mapped-ram"]
        lines.append(f"mapped-ram file  {f['file-bytes']:,} bytes, {f['allocated-bytes']:,} bytes allocated (sparse)")
    print("\n".join(lines), file=out)


def check_mapped_ram_options(output: str, xbzrle_cache: int, compress_threads: int) -> None:
    """What QEMU refuses with mapped-ram (migration/options.c migrate_caps_check),
    and the output a file: URI needs."""
    if output == "-":
        raise UsageError("--mapped-ram writes pages at fixed file offsets: give a regular file with -o, not -")
    if xbzrle_cache:
        raise UsageError("--mapped-ram excludes --xbzrle-cache (QEMU: mapped-ram is incompatible with xbzrle)")
    if compress_threads:
        raise UsageError("--mapped-ram excludes --compress-threads (QEMU: mapped-ram is incompatible with compression)")


def file_allocation(path: str) -> dict:
    st = os.stat(path)
    return {"file-bytes": st.st_size, "allocated-bytes": st.st_blocks * 512}


@app.command()
def encode(
    source: Annotated[str, typer.Argument(metavar="DIR|IMAGE",
                                          help="Extract layout directory (manifest.json + block files) or a raw block image.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Stream file to write, or - for stdout.")],
    block: Annotated[Optional[str], typer.Option("--block", help="Block name of a raw image (e.g. pc.ram).")] = None,
    machine: Annotated[Optional[str], typer.Option("--machine", help="Machine type as QEMU sends it (e.g. pc-i440fx-7.2).")] = None,
    then: Annotated[Optional[list[str]], typer.Option("--then", metavar="DIR|IMAGE",
                                                      help="A later image of the same VM: one more iteration (repeatable).")] = None,
    template: Annotated[Optional[str], typer.Option("--template", metavar="STREAM",
                                                    help="Copy configuration, device sections and VMDESCRIPTION from this capture.")] = None,
    xbzrle_cache: Annotated[Optional[str], typer.Option("--xbzrle-cache", metavar="BYTES",
                                                        help="Use XBZRLE after the bulk stage with a cache of this size (e.g. 64M).")] = None,
    compress_threads: Annotated[int, typer.Option("--compress-threads", help="COMPRESS_PAGE records from N threads (0: off).")] = 0,
    compress_level: Annotated[int, typer.Option("--compress-level", help="zlib level for compression (QEMU default 1).")] = 1,
    final_in_end: Annotated[bool, typer.Option("--final-in-end/--no-final-in-end",
                                               help="Send the last --then image in the END section (stop-and-copy).")] = True,
    stats_json: Annotated[Optional[Path], typer.Option("--stats-json", metavar="FILE", help="Write the accounting as JSON.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the accounting as JSON.")] = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress on stderr (default: when a terminal).")] = None,
    mapped_ram: Annotated[bool, typer.Option("--mapped-ram", help="Write a mapped-ram file (QEMU 9.0+ file: URI, capability mapped-ram): pages at fixed offsets, zero pages left as holes.")] = False,
) -> None:
    """Encode memory images into a migration stream that QEMU loads with -incoming."""

    def go():
        # The engine is imported on use: every other command starts faster without it.
        from .encoder import FdSink, encode_stream
        from .memimage import MemoryImage
        from .template import StreamTemplate

        if compress_threads < 0:
            raise UsageError("--compress-threads must be >= 0")
        cache = parse_size(xbzrle_cache) if xbzrle_cache is not None else 0
        if mapped_ram:
            check_mapped_ram_options(output, cache, compress_threads)
        images = []
        prog = _EncodeProgress(progress)
        try:
            first = MemoryImage.open(source, block=block, machine=machine)
            images.append(first)
            for later in then or []:
                img = MemoryImage.open(later, block=block if not os.path.isdir(later) else None,
                                       machine=machine or first.machine)
                images.append(img)
            tpl = StreamTemplate.load(template) if template else None
            with output_fd(output) as fd:
                if mapped_ram:
                    from .mappedram_writer import encode_mapped_ram

                    stats = encode_mapped_ram(images, fd, template=tpl, progress=prog)
                else:
                    sink = FdSink(fd)
                    try:
                        stats = encode_stream(images, sink, xbzrle_cache_size=cache,
                                              compress_threads=compress_threads, compress_level=compress_level,
                                              template=tpl, final_in_end=final_in_end, progress=prog)
                    finally:
                        sink.close()
        finally:
            prog.done()
            for img in images:
                img.close()
        report_stats(stats, output, mapped_ram=mapped_ram, stats_json=stats_json, json_out=json_out)

    _run(go)
