"""``migstream report STREAM -o report.html``: a self-contained HTML page."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .progress import DecodeProgress
from .progress import stream_size
from .root import INSPECT
from .root import InputOptions
from .root import StreamArg
from .root import app
from .root import err
from .root import reads_stream
from .root import run_command


@app.command("report", rich_help_panel=INSPECT)
@reads_stream()
def report_command(
    stream: StreamArg,
    inp: InputOptions,
    output: Annotated[str, typer.Option("-o", "--output", help="HTML file to write, - for stdout.")],
) -> None:
    """A self-contained HTML report: summary, per-iteration charts, page maps, devices, errors.

    An invalid or incomplete stream still gets a report (showing why); the exit code is
    then 1.  A file that is not a migration stream at all gets none (exit 1)."""

    def go():
        from ..tools.report import collect  # imported on use: the CLI starts faster
        from ..tools.report import render  # imported on use: the CLI starts faster

        prog = DecodeProgress(stream_size(stream), inp.progress)
        try:
            data = collect(stream, progress=prog, **inp.read_kwargs())
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
        if data.error or data.incomplete:
            err(data.error or f"error: {data.incomplete}")
            raise typer.Exit(1)

    run_command(go)
