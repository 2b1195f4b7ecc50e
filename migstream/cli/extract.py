"""``migstream extract``: every RAM block (and block-migration disk) as a sparse file,
plus manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .jsonout import error_object
from .jsonout import print_json
from .progress import DecodeProgress
from .progress import stream_size
from .root import INSPECT
from .root import InputOptions
from .root import JsonOpt
from .root import StreamArg
from .root import app
from .root import err
from .root import reads_stream
from .root import run_command


@app.command(rich_help_panel=INSPECT)
@reads_stream()
def extract(
    stream: StreamArg,
    inp: InputOptions,
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory for block files + manifest.json.")],
    block: Annotated[
        list[str] | None, typer.Option("--block", help="Only this RAM block (repeatable).", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild every RAM block as a sparse file in DIR, plus DIR/manifest.json.

    Nothing is written when STREAM is not a migration stream at all."""

    def go():
        prog = None
        if inp.progress is not False:
            # The source is opened inside extract(); report by bytes consumed.
            prog = DecodeProgress(stream_size(stream), inp.progress)
        from ..tools.extract import extract as do_extract  # numpy and the RAM image: extract only

        result = do_extract(
            stream,
            str(output),
            blocks=set(block) if block else None,
            progress=prog,
            **inp.read_kwargs(),
        )
        if prog:
            prog.done()
        for off, msg in result.warnings:
            err(f"warning at offset 0x{off:x}: {msg}")
        if json_out:
            doc = dict(result.manifest)
            if result.error is not None:
                doc["error"] = error_object(result.error)  # the manifest file keeps the line
            print_json(doc)
        if result.error:
            err(str(result.error))
            err(f"kept what was decoded before the error in {output} (manifest says complete: false)")
            raise typer.Exit(1)
        if not result.manifest["complete"]:
            err("warning: memory may be incomplete (manifest says complete: false)")

    run_command(go, json_out=json_out)
