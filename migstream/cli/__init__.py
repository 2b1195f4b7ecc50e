"""The ``migstream`` command: one module per command, each registering on ``app.app``."""

from __future__ import annotations

from . import capture  # noqa: F401
from . import devices  # noqa: F401
from . import diff  # noqa: F401
from . import dump  # noqa: F401
from . import encode  # noqa: F401
from . import extract  # noqa: F401
from . import info  # noqa: F401
from . import records  # noqa: F401
from . import report  # noqa: F401
from . import rewrite  # noqa: F401
from . import snapshots  # noqa: F401
from . import tui  # noqa: F401
from . import validate  # noqa: F401
from .app import app
from .startup import prepare

#: How ``migstream --help`` lists the commands, panel by panel (inspect, write, record:
#: ``rich_help_panel`` in each module; a panel shows where its first command is), the
#: core four first.
HELP_ORDER = (
    "info", "records", "extract", "validate", "devices", "diff", "report", "tui", "snapshots",
    "encode", "dump", "transcode", "rewrite",
    "capture", "tap",
)  # fmt: skip


def _command_name(cmd) -> str:
    return cmd.name or cmd.callback.__name__.replace("_", "-")


app.registered_commands.sort(key=lambda cmd: HELP_ORDER.index(_command_name(cmd)))


def main() -> None:
    prepare(app, _command_name)
    app()
