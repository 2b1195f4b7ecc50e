"""The code checks, run as tests: import-linter's contracts, ruff (lint and format)
and mypy, each with its configuration from pyproject.toml, from the repository root.

Each tool runs as a subprocess of this Python (``sys.executable -m ...``), so the
versions pinned in the ``test`` extra are the ones that judge.  None of them writes
into the checkout: ruff and import-linter run without their caches, and mypy keeps
its cache (a cold run takes seconds, a warm one under one) in the temporary directory,
one per checkout.  A failure shows the tool's own report.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.samples import ROOT

#: import-linter installs only a ``lint-imports`` script; this runs its entry point.
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def run_check(*args: str) -> None:
    """Run a check in the repository root; it must exit 0."""
    env = dict(os.environ)
    # The package of this checkout, also for tools that import it (import-linter).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}", pytrace=False)


def mypy_cache_dir() -> Path:
    """A mypy cache for this checkout outside it (checkouts do not share one)."""
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"migstream-mypy-cache-{os.getuid()}-{checkout}"


def test_import_contracts_kept():
    run_check("-c", LINT_IMPORTS, "--no-cache")


def test_ruff_check():
    run_check("-m", "ruff", "check", "--no-cache", ".")


def test_ruff_format():
    run_check("-m", "ruff", "format", "--check", "--no-cache", ".")


def test_mypy():
    run_check("-m", "mypy", "--cache-dir", str(mypy_cache_dir()))
