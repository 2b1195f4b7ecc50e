"""The ``migstream`` Typer app, the options commands share, and how errors end a command.

Exit codes: 0 ok, 1 invalid stream, 2 usage (bad arguments, unreadable files), 3
output I/O error.  Data goes to stdout; progress, warnings and errors to stderr.  A
stream error is one line ``error at offset 0x...: <what>``, never a traceback.

Every command lives in its own module of this package and registers on ``app``;
``migstream.cli`` imports the ones a command line needs (this module imports none).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import NoReturn
from typing import TypeVar
from typing import get_type_hints

import typer

from ..containers.qcow2 import snapshot_path
from ..errors import MigstreamError
from ..errors import StreamError
from ..errors import UsageError
from ..wire.limits import MAX_PAGE_SIZE
from ..wire.limits import MIN_PAGE_SIZE
from .jsonout import dumps
from .jsonout import error_object
from .jsonout import line
from .progress import DecodeProgress

if TYPE_CHECKING:  # imported where a stream is opened: encode and --version need no decoder
    from ..containers.sources import StreamSource
    from ..decode.decoder import StreamDecoder

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Inspect, validate and extract QEMU live-migration streams.",
)

#: The --help panels commands are grouped in (``@app.command(rich_help_panel=...)``).
INSPECT = "Inspect"
WRITE = "Write"
RECORD = "Record"


def _show_version(value: bool) -> None:
    if value:
        from .version import version_text

        print(version_text())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    pass


StreamArg = Annotated[
    str,
    typer.Argument(
        metavar="STREAM",
        help="Stream file (.gz/.bz2/.xz/.zst ok), libvirt save image, capture directory, or - for stdin.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (docs/json.md).")]


def _check_page_size(value: int | None) -> int | None:
    if value is not None and (value & (value - 1) or not MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE):
        raise typer.BadParameter(f"{value} is not a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}")
    return value


PageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--page-size",
        help="Target page size in bytes (overrides the stream).",
        callback=_check_page_size,
        show_default=False,
    ),
]
# None (the default): progress when stderr is a terminal (DecodeProgress decides).
ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress on stderr (default: when stderr is a terminal).", show_default=False
    ),
]
ProgressOffOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress on stderr (default: off).", show_default=False),
]
HookOpt = Annotated[bool, typer.Option("--rdma", help="Accept RDMA HOOK records.")]
ChannelOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--channel",
        help="A multifd channel capture (repeatable; any order; compressed ok; a capture directory brings its own).",
        show_default=False,
    ),
]

SnapshotOpt = Annotated[
    str | None,
    typer.Option(
        "--snapshot",
        metavar="NAME|ID",
        help="qcow2 image: the internal snapshot to read (or IMAGE@SNAPSHOT; default: the only one with VM state).",
        show_default=False,
    ),
]

#: The parameters that name an input; ``--snapshot`` applies to each of them.
STREAM_PARAMETERS = ("stream", "side_a", "side_b")


@dataclass(frozen=True)
class InputOptions:
    """The options every reading command takes, in one place: add an input option
    here and in ``INPUT_PARAMETERS`` and every command decorated with
    ``@reads_stream`` has it."""

    page_size: int | None = None
    progress: bool | None = None
    rdma: bool = False
    channel: tuple[str, ...] = ()
    snapshot: str | None = None  # already attached to the command's STREAM as IMAGE@SNAPSHOT

    def read_kwargs(self) -> dict[str, Any]:
        """How the tools that open the stream themselves (tools/extract, report,
        devices, rewrite, the TUI index) take these options: one dict, so that a new
        input option reaches them all from here."""
        return {"page_size": self.page_size, "allow_hook": self.rdma, "channels": list(self.channel)}

    def channels_of(self, source: StreamSource) -> list[str]:
        """The multifd channel files: --channel, else the capture directory's own."""
        return list(self.channel) or list(source.channel_paths)

    @contextmanager
    def open(self, stream: str) -> Iterator[tuple[StreamSource, StreamDecoder, DecodeProgress]]:
        """The source, its decoder and a progress line for STREAM, closed on exit.
        A file that is not a stream at all fails here, before any output."""
        from ..containers.sources import StreamSource
        from ..containers.stream import open_decoder

        source = StreamSource(stream)
        try:
            decoder = open_decoder(source, page_size=self.page_size, allow_hook=self.rdma)
            prog = DecodeProgress(source.size, self.progress)
            try:
                yield source, decoder, prog
            finally:
                prog.done()
        finally:
            source.close()

    def events(self, source: StreamSource, decoder: StreamDecoder, prog, stats: list | None = None) -> Iterator:
        """The stream's events with its multifd channels' packets in place."""
        from ..containers.multifd import with_channels
        from ..containers.stream import iter_events

        return with_channels(iter_events(source, decoder, prog), self.channels_of(source), decoder, stats)


#: The command-line parameters of ``InputOptions`` (name -> (annotation, default)).
INPUT_PARAMETERS: dict[str, tuple[object, object]] = {
    "page_size": (PageSizeOpt, None),
    "progress": (ProgressOpt, None),
    "rdma": (HookOpt, False),
    "channel": (ChannelOpt, None),
    "snapshot": (SnapshotOpt, None),
}

F = TypeVar("F", bound=Callable)


def reads_stream(*, progress: bool | None = None) -> Callable[[F], F]:
    """Give a command the input options: its parameter ``inp: InputOptions`` becomes
    the ``INPUT_PARAMETERS`` on the command line.  ``progress`` is the command's
    default for --progress/--no-progress (None: when stderr is a terminal)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        hints = get_type_hints(fn, include_extras=True)
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values() if p.name != "inp"
        ]
        defaults = {name: default for name, (_, default) in INPUT_PARAMETERS.items()} | {"progress": progress}
        for name, (annotation, _) in INPUT_PARAMETERS.items():
            if name == "progress" and progress is False:
                annotation = ProgressOffOpt
            params.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=annotation)
            )

        @functools.wraps(fn)
        def command(*args, **kwargs):
            given = {name: kwargs.pop(name, defaults[name]) for name in INPUT_PARAMETERS}
            given["channel"] = tuple(str(c) for c in given["channel"] or ())
            for name in STREAM_PARAMETERS:  # --snapshot: the form StreamSource opens (IMAGE@SNAPSHOT)
                if kwargs.get(name) is not None and given["snapshot"] is not None:
                    kwargs[name] = run_command(lambda v=kwargs[name]: snapshot_path(v, given["snapshot"]))
            return fn(*args, inp=InputOptions(**given), **kwargs)

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return wrap


def err(msg: str) -> None:
    """One line on stderr."""
    print(msg, file=sys.stderr)


def warn_all(decoder: StreamDecoder) -> None:
    for off, msg in decoder.warnings:
        err(f"warning at offset 0x{off:x}: {msg}")


T = TypeVar("T")


def run_command(
    fn: Callable[[], T], *, trouble: int | None = None, json_out: bool = False, json_lines: bool = False
) -> T:
    """Turn library errors into one line and an exit code.  ``trouble`` replaces
    every error code for commands whose 1 means something else (diff: cmp's 2).
    With ``json_out`` the error is also printed on stdout as a JSON document
    (``jsonout.error_object``: error, offset, section, block, page); ``json_lines``
    prints it as one line (``records --json`` is JSON Lines).

    The line on stderr is the whole report: each ``typer.Exit`` is raised ``from None``
    so that the error it replaces is not chained to it as its cause or context."""

    def fail(message: str, exc: BaseException, code: int) -> NoReturn:
        err(message)
        if json_out:
            doc = error_object(exc)
            doc["error"] = message
            print(line(doc) if json_lines else dumps(doc))
        raise typer.Exit(trouble or code) from None

    try:
        return fn()
    except StreamError as exc:
        fail(str(exc), exc, 1)
    except UsageError as exc:
        fail(f"error: {exc}", exc, 2)
    except MigstreamError as exc:
        fail(f"error: {exc}", exc, 1)
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as exc:
        fail(f"error: {exc}", exc, 3)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
