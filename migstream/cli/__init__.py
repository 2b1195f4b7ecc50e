"""The ``migstream`` command: one module per command, each registering on ``root.app``.

``main()`` imports only the module of the command on its command line (all of them for
``--help``, completion or a name it does not know): a command's start-up does not pay
for the imports of the fourteen others.  ``migstream.cli.app`` (the attribute, as
tests and embedders use it) is the app with every command registered.
"""

from __future__ import annotations

import importlib
import sys

from .startup import command_word
from .startup import prepare

#: Command name -> the module of this package that registers it.
COMMAND_MODULES = {
    "info": "info",
    "records": "records",
    "extract": "extract",
    "validate": "validate",
    "devices": "devices",
    "diff": "diff",
    "report": "report",
    "tui": "tui",
    "snapshots": "snapshots",
    "encode": "encode",
    "dump": "dump",
    "transcode": "rewrite",
    "rewrite": "rewrite",
    "capture": "capture",
    "tap": "capture",
}

#: How ``migstream --help`` lists the commands, panel by panel (inspect, write, record:
#: ``rich_help_panel`` in each module; a panel shows where its first command is), the
#: core four first.
HELP_ORDER = tuple(COMMAND_MODULES)


def _command_name(cmd) -> str:
    return cmd.name or cmd.callback.__name__.replace("_", "-")


def load_commands(names=None):
    """Register the commands ``names`` (every command when None) and return the app."""
    modules = dict.fromkeys(COMMAND_MODULES[n] for n in (COMMAND_MODULES if names is None else names))
    for module in modules:
        importlib.import_module(f".{module}", __name__)
    from .root import app

    app.registered_commands.sort(key=lambda cmd: HELP_ORDER.index(_command_name(cmd)))
    return app


def __getattr__(name: str):
    if name == "app":  # the full app, on first use (PEP 562), then an attribute
        globals()["app"] = full = load_commands()
        return full
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def needed_commands(argv: list[str]) -> list[str] | None:
    """The commands a command line needs: the one it names, none for ``--version``
    alone, else all (None: ``--help``, completion, a misspelt name)."""
    name = command_word(argv)
    if name in COMMAND_MODULES:
        return [name]
    if name is None and "--version" in argv and "--help" not in argv:
        return []
    return None


def main() -> None:
    app = load_commands(needed_commands(sys.argv[1:]))
    prepare(app, _command_name)
    app()
