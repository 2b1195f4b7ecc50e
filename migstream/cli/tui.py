"""``migstream tui STREAM``: the Textual TUI (the app itself lives in ``migstream.tui``)."""

from __future__ import annotations

from .app import ChannelOpt
from .app import PageSizeOpt
from .app import SnapshotOpt
from .app import StreamArg
from .app import app
from .app import run_command
from .app import with_snapshot


@app.command()
def tui(
    stream: StreamArg, page_size: PageSizeOpt = None, channel: ChannelOpt = None, snapshot: SnapshotOpt = None
) -> None:
    """Browse and replay a stream: records, page map, iterations, record details."""
    stream = with_snapshot(stream, snapshot)

    def go():
        if stream == "-":
            from ..errors import UsageError

            raise UsageError("the TUI needs a file (it reads records back by offset); save the stream first")
        from ..tools.index import StreamIndex
        from ..tui.app import MigstreamApp

        index = StreamIndex(stream, page_size=page_size, channels=[str(c) for c in channel or ()])
        app_ = MigstreamApp(stream, index=index)
        try:
            app_.run()
        finally:
            index.close()

    run_command(go)
