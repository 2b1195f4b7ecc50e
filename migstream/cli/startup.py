"""What ``main()`` does before typer runs a command, to start faster
(benchmarks/bench_floor.py measures it; each step is worth milliseconds per command)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable


def prepare(app, command_name: Callable, argv: list[str] | None = None) -> None:
    """Set up the process for the command named in ``argv`` (default: sys.argv[1:])."""
    # numpy's OpenBLAS starts a thread per core at import and leaves them spinning
    # after use; migstream does no linear algebra.  One thread saves 50-100 ms of
    # every numpy command's start-up and a core's worth of spinning while extract and
    # encode write.  (numpy is imported only by the commands, after this.)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # What the imports made lives until exit: full collections, which the commands'
    # batches of short-lived objects trigger, need not walk it again.
    gc.freeze()
    keep_only_invoked(app, command_name, sys.argv[1:] if argv is None else argv)


def command_word(argv: list[str]) -> str | None:
    """The word of ``argv`` that names the command: the root takes no option with a
    value, so it is the first word that is not an option (None: there is none)."""
    return next((a for a in argv if not a.startswith("-")), None)


def keep_only_invoked(app, command_name: Callable, argv: list[str]) -> None:
    """typer builds the parameters of every registered command on each start
    (evaluating their annotations, 10-20 ms for all); when ``argv`` names a command,
    keep that one only.  Without a command (``--help``, a typo) all stay."""
    name = command_word(argv)
    chosen = [cmd for cmd in app.registered_commands if command_name(cmd) == name]
    if not chosen:
        return
    if not (app.registered_callback or app.info.callback):
        # typer makes an app of one command and no callback that command itself
        # (no name on the command line): a callback without options keeps the group.
        app.info.callback = _no_options
    app.registered_commands[:] = chosen


def _no_options() -> None:
    pass
