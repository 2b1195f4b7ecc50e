"""``migstream report STREAM -o report.html``: a self-contained HTML page."""

from __future__ import annotations

import os
from typing import Annotated

import typer

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


@app.command("report")
def report_command(
    stream: StreamArg,
    output: Annotated[str, typer.Option("-o", "--output", help="HTML file to write, - for stdout.")],
    page_size: PageSizeOpt = None,
    progress: ProgressOpt = None,
    snapshot: SnapshotOpt = None,
) -> None:
    """A self-contained HTML report: summary, per-iteration charts, page maps, devices, errors.

    An invalid stream still gets a report (showing the error); the exit code is then 1."""
    stream = with_snapshot(stream, snapshot)

    def go():
        from ..tools.report import collect  # imported on use: the CLI starts faster
        from ..tools.report import render  # imported on use: the CLI starts faster

        prog = DecodeProgress(stream_size(stream), progress)
        try:
            data = collect(stream, page_size=page_size, progress=prog)
        finally:
            prog.done()
        page = render(data)
        if output == "-":
            print(page, end="")
        else:
            tmp = output + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(page)
            os.replace(tmp, output)
        if data.error:
            err(data.error)
            raise typer.Exit(1)

    run_command(go)
