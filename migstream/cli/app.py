"""The ``migstream`` Typer app, the options commands share, and how errors end a command.

Exit codes: 0 ok, 1 invalid stream, 2 usage (bad arguments, unreadable files), 3
output I/O error.  Data goes to stdout; progress, warnings and errors to stderr.  A
stream error is one line ``error at offset 0x...: <what>``, never a traceback.

Every command lives in its own module of this package and registers on ``app``;
``migstream.cli`` imports them all (this module imports none of them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from typing import TypeVar

import typer

from ..containers.qcow2 import snapshot_path
from ..containers.sources import StreamSource
from ..containers.stream import open_decoder
from ..decode.decoder import StreamDecoder
from ..errors import MigstreamError
from ..errors import StreamError
from ..errors import UsageError
from .progress import DecodeProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Inspect, validate and extract QEMU live-migration streams.",
)

StreamArg = Annotated[str, typer.Argument(metavar="STREAM", help="Stream file, .gz/.xz/.zst file, or - for stdin.")]
PageSizeOpt = Annotated[int | None, typer.Option("--page-size", help="Target page size (overrides the stream).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# None (the default): progress when stderr is a terminal (DecodeProgress decides).
ProgressOpt = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress on stderr (default: when a terminal).")
]
HookOpt = Annotated[bool, typer.Option("--rdma", help="Accept RDMA HOOK records.")]
ChannelOpt = Annotated[
    list[Path] | None,
    typer.Option("--channel", help="A multifd channel capture (repeatable; any order; .gz/.xz/.zst ok)."),
]

SnapshotOpt = Annotated[
    str | None,
    typer.Option(
        "--snapshot", metavar="NAME|ID", help="qcow2 image: the internal snapshot to read (or IMAGE@SNAPSHOT)."
    ),
]


def err(msg: str) -> None:
    """One line on stderr."""
    print(msg, file=sys.stderr)


@contextmanager
def opened_stream(
    stream: str, page_size: int | None, rdma: bool, progress: bool | None, snapshot: str | None = None
) -> Iterator[tuple[StreamSource, StreamDecoder, DecodeProgress]]:
    """The source, its decoder and a progress line for STREAM (a qcow2 image: its
    ``snapshot``), closed on exit."""
    source = StreamSource(snapshot_path(stream, snapshot))
    try:
        decoder = open_decoder(source, page_size=page_size, allow_hook=rdma)
        prog = DecodeProgress(source.size, progress)
        try:
            yield source, decoder, prog
        finally:
            prog.done()
    finally:
        source.close()


def with_snapshot(stream: str, snapshot: str | None) -> str:
    """STREAM with a --snapshot selector attached (IMAGE@SNAPSHOT, what StreamSource
    opens); a misplaced --snapshot ends the command with one line."""
    return run_command(lambda: snapshot_path(stream, snapshot))


def warn_all(decoder: StreamDecoder) -> None:
    for off, msg in decoder.warnings:
        err(f"warning at offset 0x{off:x}: {msg}")


T = TypeVar("T")


def run_command(fn: Callable[[], T], *, trouble: int | None = None) -> T:
    """Turn library errors into one line and an exit code.  ``trouble`` replaces
    every error code for commands whose 1 means something else (diff: cmp's 2).

    The line on stderr is the whole report: each ``typer.Exit`` is raised ``from None``
    so that the error it replaces is not chained to it as its cause or context."""
    try:
        return fn()
    except StreamError as exc:
        err(str(exc))
        raise typer.Exit(trouble or 1) from None
    except UsageError as exc:
        err(f"error: {exc}")
        raise typer.Exit(trouble or 2) from None
    except MigstreamError as exc:
        err(f"error: {exc}")
        raise typer.Exit(trouble or 1) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as exc:
        err(f"error: {exc}")
        raise typer.Exit(trouble or 3) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
