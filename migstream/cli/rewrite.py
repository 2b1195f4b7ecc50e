"""``migstream transcode`` and ``migstream rewrite``: re-emit a capture with its
own device state, memory re-encoded (and patched)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .encoding import check_mapped_ram_options
from .encoding import output_fd
from .encoding import parse_size
from .encoding import report_stats
from .progress import EncodeProgress
from .root import WRITE
from .root import InputOptions
from .root import app
from .root import reads_stream
from .root import run_command

InArg = Annotated[
    str,
    typer.Argument(
        metavar="STREAM",
        help="A captured stream (file, .gz/.bz2/.xz/.zst, libvirt save image, capture directory).",
    ),
]
OutOpt = Annotated[str, typer.Option("-o", "--output", help="Stream file to write, or - for stdout.")]
XbzrleOpt = Annotated[
    str | None,
    typer.Option(
        "--xbzrle-cache",
        metavar="BYTES",
        help="Send XBZRLE deltas (cache size, e.g. 64M): the input's iterations become rounds.",
    ),
]
CompressOpt = Annotated[int, typer.Option("--compress-threads", help="COMPRESS_PAGE records from N threads (0: off).")]
LevelOpt = Annotated[int, typer.Option("--compress-level", help="zlib level for compression (QEMU default 1).")]
StatsOpt = Annotated[Path | None, typer.Option("--stats-json", metavar="FILE", help="Write the accounting as JSON.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the accounting as JSON.")]
PlainOpt = Annotated[
    bool,
    typer.Option(
        "--plain",
        help="ZERO and PAGE records only, as without --xbzrle-cache, --compress-threads and "
        "--mapped-ram; refuses those options.",
    ),
]
MappedOpt = Annotated[
    bool, typer.Option("--mapped-ram", help="Write a mapped-ram file (QEMU 9.0+ file: URI, capability mapped-ram).")
]


def _run_transcode(
    *,
    stream,
    output,
    patches,
    xbzrle_cache,
    compress_threads,
    compress_level,
    stats_json,
    json_out,
    inp,
    plain,
    mapped_ram,
):
    def go():
        from ..encode.sinks import FdSink  # engine imported on use: the CLI starts faster
        from ..tools.rewrite import transcode

        if plain and (xbzrle_cache or compress_threads):
            raise UsageError("--plain excludes --xbzrle-cache and --compress-threads")
        if plain and mapped_ram:
            raise UsageError("--plain excludes --mapped-ram")
        if compress_threads < 0:
            raise UsageError("--compress-threads must be >= 0")
        cache = parse_size(xbzrle_cache) if xbzrle_cache is not None else 0
        if mapped_ram:
            check_mapped_ram_options(output, cache, compress_threads)
        prog = EncodeProgress(inp.progress)
        try:
            with output_fd(output) as fd:
                sink = fd if mapped_ram else FdSink(fd)
                try:
                    stats = transcode(
                        stream,
                        sink,
                        patches=patches,
                        **inp.read_kwargs(),
                        xbzrle_cache_size=cache,
                        compress_threads=compress_threads,
                        compress_level=compress_level,
                        progress=prog,
                        mapped_ram=mapped_ram,
                    )
                finally:
                    if not mapped_ram:
                        sink.close()
        finally:
            prog.done()
        report_stats(stats, output, mapped_ram=mapped_ram, stats_json=stats_json, json_out=json_out)

    run_command(go, json_out=json_out and output != "-")  # a stream on stdout: the error on stderr only


@app.command("transcode", rich_help_panel=WRITE)
@reads_stream()
def transcode_command(
    stream: InArg,
    inp: InputOptions,
    output: OutOpt,
    xbzrle_cache: XbzrleOpt = None,
    compress_threads: CompressOpt = 0,
    compress_level: LevelOpt = 1,
    stats_json: StatsOpt = None,
    json_out: JsonOpt = False,
    plain: PlainOpt = False,
    mapped_ram: MappedOpt = False,
) -> None:
    """Re-encode a capture (XBZRLE, compressed, multifd, postcopy...) as another encoding
    of the same final memory and device state."""
    _run_transcode(patches=[], **locals())  # locals() here: exactly the command's options


@app.command("rewrite", rich_help_panel=WRITE)
@reads_stream()
def rewrite_command(
    stream: InArg,
    inp: InputOptions,
    output: OutOpt,
    patch: Annotated[
        list[str] | None,
        typer.Option(
            "--patch", metavar="BLOCK:OFFSET=FILE", help="Write FILE's bytes at OFFSET of RAM block BLOCK (repeatable)."
        ),
    ] = None,
    patch_hex: Annotated[
        list[str] | None,
        typer.Option(
            "--patch-hex", metavar="BLOCK:OFFSET=HEX", help="Write these hex bytes at OFFSET of BLOCK (repeatable)."
        ),
    ] = None,
    xbzrle_cache: XbzrleOpt = None,
    compress_threads: CompressOpt = 0,
    compress_level: LevelOpt = 1,
    stats_json: StatsOpt = None,
    json_out: JsonOpt = False,
    plain: PlainOpt = False,
    mapped_ram: MappedOpt = False,
) -> None:
    """Patch guest memory of a capture and re-emit it with its own device state and
    configuration, ready for `-incoming`."""

    options = dict(locals())  # the command's options; the two --patch lists become patches
    patch, patch_hex = options.pop("patch"), options.pop("patch_hex")

    def parse():
        from ..tools.rewrite import Patch

        patches = [Patch.parse(p) for p in patch or []] + [Patch.parse(p, hex_data=True) for p in patch_hex or []]
        if not patches:
            raise UsageError("nothing to patch: give --patch or --patch-hex (or use transcode)")
        return patches

    _run_transcode(patches=run_command(parse), **options)
