"""Imports every command module so that it registers on `migstream.cli.app`.

Each front-end command that is not part of the core four lives in `cli_<name>.py`, does
`from .cli import app` and decorates its function with `@app.command()`. List it here.
"""

# One import per line, sorted; keep this file free of anything else.
from . import cli_capture  # noqa: F401
from . import cli_devices  # noqa: F401
from . import cli_diff  # noqa: F401
from . import cli_encode  # noqa: F401
from . import cli_report  # noqa: F401
from . import cli_rewrite  # noqa: F401
from . import cli_tui  # noqa: F401
