"""``migstream tui STREAM``: the Textual TUI (the app itself lives in ``migstream.tui``)."""

from __future__ import annotations

from .root import INSPECT
from .root import InputOptions
from .root import StreamArg
from .root import app
from .root import reads_stream
from .root import run_command


@app.command(rich_help_panel=INSPECT)
@reads_stream()
def tui(stream: StreamArg, inp: InputOptions) -> None:
    """Browse and replay a stream: records, page map, iterations, record details.

    The TUI shows its own indexing progress (--progress changes nothing)."""

    def go():
        if stream == "-":
            from ..errors import UsageError

            raise UsageError("the TUI needs a file (it reads records back by offset); save the stream first")
        from ..tools.index import StreamIndex
        from ..tui.app import MigstreamApp

        index = StreamIndex(stream, **inp.read_kwargs())
        app_ = MigstreamApp(stream, index=index)
        try:
            app_.run()
        finally:
            index.close()

    run_command(go)
