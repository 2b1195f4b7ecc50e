"""The ``migstream`` command: one module per command, each registering on ``app.app``."""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per core at import and lets them spin after use;
# migstream does no linear algebra: one thread saves 50-100 ms of every numpy command's
# start-up and a core's worth of spinning while extract and encode write
# (benchmarks/bench_floor.py).  Set before any command imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import capture  # noqa: F401
from . import devices  # noqa: F401
from . import diff  # noqa: F401
from . import encode  # noqa: F401
from . import extract  # noqa: F401
from . import info  # noqa: F401
from . import records  # noqa: F401
from . import report  # noqa: F401
from . import rewrite  # noqa: F401
from . import tui  # noqa: F401
from . import validate  # noqa: F401
from .app import app

#: How ``migstream --help`` lists the commands: the core four first.
HELP_ORDER = (
    "info", "records", "extract", "validate", "capture", "tap", "devices", "diff", "encode", "report",
    "transcode", "rewrite", "tui",
)  # fmt: skip


def _command_name(cmd) -> str:
    return cmd.name or cmd.callback.__name__.replace("_", "-")


app.registered_commands.sort(key=lambda cmd: HELP_ORDER.index(_command_name(cmd)))


def main() -> None:
    import gc

    # What the imports made lives until exit: the collector need not walk it again on
    # every full collection the commands' batches of short-lived objects trigger.
    gc.freeze()
    app()
