"""main()'s start-up steps (cli/startup.py): keeping only the invoked command changes
nothing a user sees: same output, same exit status."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from migstream.cli import _command_name
from migstream.cli import app
from migstream.cli.startup import keep_only_invoked
from support.samples import SAMPLES


@pytest.mark.parametrize(
    "argv",
    [
        ["info", str(SAMPLES / "x86-stopped.mig.zst")],
        ["info", "--help"],
        ["info"],
        ["info", "--bogus"],
        ["tap", "--help"],
        ["transcode", "--help"],
        ["--help"],
        ["bogus", "x"],
    ],
)
def test_only_the_invoked_command_behaves_like_all(monkeypatch, argv):
    full = CliRunner().invoke(app, argv)
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    monkeypatch.setattr(app.info, "callback", app.info.callback)
    keep_only_invoked(app, _command_name, argv)
    if argv[0] in ("info", "tap", "transcode"):
        assert len(app.registered_commands) == 1
    pruned = CliRunner().invoke(app, argv)
    assert (pruned.exit_code, pruned.output) == (full.exit_code, full.output)
