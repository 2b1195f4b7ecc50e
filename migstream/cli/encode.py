"""``migstream encode``: memory images -> a stream QEMU loads with -incoming."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..containers.qcow2 import snapshot_path
from ..errors import UsageError
from .dump import MapOpt
from .dump import layout_options
from .encoding import check_mapped_ram_options
from .encoding import output_fd
from .encoding import parse_size
from .encoding import report_stats
from .progress import EncodeProgress
from .root import WRITE
from .root import ProgressOpt
from .root import SnapshotOpt
from .root import app
from .root import run_command


@app.command(rich_help_panel=WRITE)
def encode(
    source: Annotated[
        str,
        typer.Argument(
            metavar="DIR|IMAGE",
            help=(
                "Extract layout directory (manifest.json + block files), a raw block image (--block), or with "
                "--template a guest-physical image (ELF core, LiME, raw)."
            ),
        ),
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="Stream file to write, or - for stdout.")],
    block: Annotated[str | None, typer.Option("--block", help="Block name of a raw image (e.g. pc.ram).")] = None,
    machine: Annotated[
        str | None, typer.Option("--machine", help="Machine type as QEMU sends it (e.g. pc-i440fx-7.2).")
    ] = None,
    then: Annotated[
        list[str] | None,
        typer.Option(
            "--then", metavar="DIR|IMAGE", help="A later image of the same VM: one more iteration (repeatable)."
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            metavar="STREAM",
            help="Copy configuration, device sections and VMDESCRIPTION from this capture.",
        ),
    ] = None,
    maps: MapOpt = None,
    xbzrle_cache: Annotated[
        str | None,
        typer.Option(
            "--xbzrle-cache",
            metavar="BYTES",
            help="Use XBZRLE after the bulk stage with a cache of this size (e.g. 64M).",
        ),
    ] = None,
    compress_threads: Annotated[
        int, typer.Option("--compress-threads", help="COMPRESS_PAGE records from N threads (0: off).")
    ] = 0,
    compress_level: Annotated[
        int, typer.Option("--compress-level", help="zlib level for compression (QEMU default 1).")
    ] = 1,
    final_in_end: Annotated[
        bool,
        typer.Option(
            "--final-in-end/--no-final-in-end", help="Send the last --then image in the END section (stop-and-copy)."
        ),
    ] = True,
    stats_json: Annotated[
        Path | None, typer.Option("--stats-json", metavar="FILE", help="Write the accounting as JSON.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the accounting as JSON.")] = False,
    progress: ProgressOpt = None,
    mapped_ram: Annotated[
        bool,
        typer.Option(
            "--mapped-ram",
            help=(
                "Write a mapped-ram file (QEMU 9.0+ file: URI, capability mapped-ram): "
                "pages at fixed offsets, zero pages left as holes."
            ),
        ),
    ] = False,
    snapshot: SnapshotOpt = None,
) -> None:
    """Encode memory images into a migration stream that QEMU loads with -incoming."""
    if snapshot is not None:  # --snapshot: of the template (a qcow2 image holding the saved VM)
        template = run_command(lambda: _template_snapshot(template, snapshot))

    def go():
        # The engine is imported on use: every other command starts faster without it.
        from ..encode.encoder import encode_stream
        from ..encode.memimage import MemoryImage
        from ..encode.sinks import FdSink

        if compress_threads < 0:
            raise UsageError("--compress-threads must be >= 0")
        cache = parse_size(xbzrle_cache) if xbzrle_cache is not None else 0
        if mapped_ram:
            check_mapped_ram_options(output, cache, compress_threads)
        images = []
        prog = EncodeProgress(progress)
        scratch = None
        try:
            if template and not block and os.path.isfile(source):
                # A guest-physical image: the template's RAM blocks, laid out as `dump` does.
                import tempfile

                from ..tools.physencode import memory_image_from_physical

                scratch = tempfile.TemporaryDirectory(prefix="migstream-phys-")
                first = memory_image_from_physical(source, template, scratch.name, layout_options(maps, None, None))
            else:
                first = MemoryImage.open(source, block=block, machine=machine)
            images.append(first)
            for later in then or []:
                img = MemoryImage.open(
                    later, block=block if not os.path.isdir(later) else None, machine=machine or first.machine
                )
                images.append(img)
            tpl = None
            if template:  # the decoder, only to read a template
                from ..tools.template import StreamTemplate

                tpl = StreamTemplate.load(template)
            with output_fd(output) as fd:
                if mapped_ram:
                    from ..encode.mappedram_writer import encode_mapped_ram

                    stats = encode_mapped_ram(images, fd, template=tpl, progress=prog)
                else:
                    sink = FdSink(fd)
                    try:
                        stats = encode_stream(
                            images,
                            sink,
                            xbzrle_cache_size=cache,
                            compress_threads=compress_threads,
                            compress_level=compress_level,
                            template=tpl,
                            final_in_end=final_in_end,
                            progress=prog,
                        )
                    finally:
                        sink.close()
        finally:
            prog.done()
            for img in images:
                img.close()
            if scratch is not None:
                scratch.cleanup()
        report_stats(stats, output, mapped_ram=mapped_ram, stats_json=stats_json, json_out=json_out)

    run_command(go, json_out=json_out and output != "-")  # a stream on stdout: the error on stderr only


def _template_snapshot(template: str | None, snapshot: str) -> str:
    if not template:
        raise UsageError("--snapshot needs --template (a qcow2 image holding the saved VM)")
    return snapshot_path(template, snapshot)
