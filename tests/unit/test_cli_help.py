"""The command line's help and shape (issue 16, part 2): every option explains itself,
a default stated in words is the real one, commands are grouped in ``--help``, shell
completion is on, and every command that reads a stream takes the same input options."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from migstream.cli import app
from migstream.cli.root import INPUT_PARAMETERS
from migstream.cli.root import INSPECT
from migstream.cli.root import RECORD
from migstream.cli.root import WRITE

ROOT = typer.main.get_command(app)
COMMANDS = ROOT.commands  # type: ignore[attr-defined]

#: Commands that read a stream (everything but encode, which reads memory images, and
#: the recorders, which listen).
READERS = ("info", "records", "extract", "validate", "devices", "diff", "report", "transcode", "rewrite", "tui")

PARAMS = [(name, p) for name, cmd in COMMANDS.items() for p in cmd.params if p.name != "help"]

#: "(default: off)", "QEMU default 1", "default: when stderr is a terminal"...
STATED = re.compile(r"\bdefault:?\s+([^).;,\]]+)", re.IGNORECASE)


@pytest.mark.parametrize(("command", "param"), PARAMS, ids=[f"{c}-{p.name}" for c, p in PARAMS])
def test_every_option_has_help_and_a_true_default(command, param):
    text = getattr(param, "help", None) or ""
    assert text.strip(), f"{command} {param.opts}: no help text"
    m = STATED.search(text)
    if m is None:
        return
    said = m.group(1).strip().lower()
    default = param.default
    if default is None:
        # Decided at run time (e.g. progress when stderr is a terminal): words, not a value.
        assert said not in ("on", "off", "none"), f"{command} {param.opts}: says {said!r}, default is None"
    elif isinstance(default, bool):
        assert said == ("on" if default else "off"), f"{command} {param.opts}: says {said!r}, default is {default}"
    else:
        assert said == str(default).lower(), f"{command} {param.opts}: says {said!r}, default is {default!r}"


def test_the_three_defaults_the_issue_found_wrong():
    progress = next(p for p in COMMANDS["records"].params if p.name == "progress")
    assert progress.default is False and "default: off" in progress.help
    quiet = next(p for p in COMMANDS["validate"].params if p.name == "quiet")
    assert quiet.help
    backlog = next(p for p in COMMANDS["capture"].params if p.name == "max_backlog")
    assert "tap stops" not in backlog.help  # capture is not a tap
    out = CliRunner().invoke(app, ["capture", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[default: 1024]" in out


def test_commands_are_grouped_in_help():
    panels = {name: cmd.rich_help_panel for name, cmd in COMMANDS.items()}  # type: ignore[attr-defined]
    assert set(panels.values()) == {INSPECT, WRITE, RECORD}, panels
    assert {n for n, p in panels.items() if p == RECORD} == {"capture", "tap"}
    assert {n for n, p in panels.items() if p == WRITE} == {"encode", "dump", "transcode", "rewrite"}
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    starts = [out.index(f"─ {panel} ") for panel in (INSPECT, WRITE, RECORD)]
    assert starts == sorted(starts)
    assert out.index("─ Record ") < out.index("│ capture ") and out.index("│ info ") < out.index("─ Write ")


def test_shell_completion_is_on():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.parametrize("command", READERS)
def test_every_reader_takes_the_input_options(command):
    names = {p.name for p in COMMANDS[command].params}
    assert set(INPUT_PARAMETERS) <= names, set(INPUT_PARAMETERS) - names
