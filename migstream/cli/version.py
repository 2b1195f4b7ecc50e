"""``migstream --version``: the package version, whether the compiled record walk is
in use, and the zstandard and Python versions.  Cheap: nothing heavy is imported
(the fast path module is already loaded by the decoder; zstandard's version comes
from its installed metadata, not from importing it)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version

from .. import __version__
from ..wire.fastpath import COMPILED


def version_text() -> str:
    try:
        zstd = version("zstandard")
    except PackageNotFoundError:
        zstd = "not installed"
    walk = "compiled (migstream/wire/_runscan.c)" if COMPILED else "pure Python (the C extension was not built)"
    return "\n".join(
        (
            f"migstream {__version__}",
            f"record walk  {walk}",
            f"zstandard    {zstd}",
            f"python       {platform.python_implementation()} {platform.python_version()}",
        )
    )
