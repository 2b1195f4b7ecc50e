"""The ``migstream`` command: one module per command, each registering on ``app.app``.

The order of the imports below is the order ``migstream --help`` lists the commands.
"""

from __future__ import annotations

from . import info, records, extract, validate  # noqa: F401  (the core four first)
from . import capture, devices, diff, encode, report, rewrite, tui  # noqa: F401
from .app import app


def main() -> None:
    app()
