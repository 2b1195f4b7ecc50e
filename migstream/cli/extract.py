"""``migstream extract``: every RAM block (and block-migration disk) as a sparse file,
plus manifest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import ChannelOpt
from .app import HookOpt
from .app import JsonOpt
from .app import PageSizeOpt
from .app import ProgressOpt
from .app import SnapshotOpt
from .app import StreamArg
from .app import app
from .app import err
from .app import run_command
from .app import with_snapshot
from .progress import DecodeProgress
from .progress import stream_size


@app.command()
def extract(
    stream: StreamArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory for block files + manifest.json.")],
    block: Annotated[list[str] | None, typer.Option("--block", help="Only this RAM block (repeatable).")] = None,
    page_size: PageSizeOpt = None,
    progress: ProgressOpt = None,
    rdma: HookOpt = False,
    json_out: JsonOpt = False,
    channel: ChannelOpt = None,
    snapshot: SnapshotOpt = None,
) -> None:
    """Rebuild every RAM block as a sparse file in DIR, plus DIR/manifest.json."""
    stream = with_snapshot(stream, snapshot)

    def go():
        prog = None
        if progress is not False:
            # The source is opened inside extract(); report by bytes consumed.
            prog = DecodeProgress(stream_size(stream), progress)
        from ..tools.extract import extract as do_extract  # numpy and the RAM image: extract only

        result = do_extract(
            stream,
            str(output),
            blocks=set(block) if block else None,
            page_size=page_size,
            allow_hook=rdma,
            progress=prog,
            channels=[str(c) for c in channel or ()],
        )
        if prog:
            prog.done()
        for off, msg in result.warnings:
            err(f"warning at offset 0x{off:x}: {msg}")
        if json_out:
            print(json.dumps(result.manifest, indent=2))
        if result.error:
            err(str(result.error))
            err(f"kept what was decoded before the error in {output} (manifest says complete: false)")
            raise typer.Exit(1)
        if not result.manifest["complete"]:
            err("warning: the stream has no RAM END section; memory may be incomplete")

    run_command(go)
