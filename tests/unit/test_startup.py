"""main()'s start-up steps (cli/startup.py): keeping only the invoked command changes
nothing a user sees: same output, same exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from migstream.cli import COMMAND_MODULES
from migstream.cli import _command_name
from migstream.cli import app
from migstream.cli import needed_commands
from migstream.cli.startup import keep_only_invoked
from migstream.wire import fastpath
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


def _imported_by(argv: list[str]) -> tuple[set[str], str]:
    """The migstream/heavy modules a real `migstream ARGV` process imported, and its stdout."""
    code = (
        "import sys, io, contextlib\n"
        f"sys.argv = ['migstream', *{argv!r}]\n"
        "from migstream.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "mods = sorted(m for m in sys.modules if m.startswith(('migstream', 'numpy', 'textual')))\n"
        "print('\\n'.join(mods)); print('---'); print(out.getvalue())\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    mods, _, out = p.stdout.partition("---\n")
    return set(mods.split()), out


def test_a_command_imports_only_its_own_module():
    """main() registers only the invoked command: `info` never imports the encoder,
    the TUI (textual), numpy or the other commands' modules, and says the same as the
    full app does (test_only_the_invoked_command_behaves_like_all)."""
    mods, out = _imported_by(["info", str(SAMPLES / "x86-stopped.mig.zst")])
    assert "machine          pc-i440fx-7.2" in out
    commands = {m.rsplit(".", 1)[1] for m in mods if m.startswith("migstream.cli.")} & set(COMMAND_MODULES.values())
    assert commands == {"info", "dump"}  # dump: info prints the physical map with dump's lines
    assert not {m for m in mods if m.startswith(("migstream.encode", "migstream.tui", "numpy", "textual"))}


@pytest.mark.parametrize(
    "argv,expected",
    [(["--version"], []), (["info", "x"], ["info"]), (["tap", "--help"], ["tap"]), (["--help"], None),
     ([], None), (["bogus"], None), (["--version", "--help"], None)],
)  # fmt: skip
def test_needed_commands(argv, expected):
    assert needed_commands(argv) == expected


def test_version_imports_no_command():
    mods, out = _imported_by(["--version"])
    assert out.startswith("migstream ")
    assert not {m for m in mods if m.startswith("migstream.cli.")} - {
        "migstream.cli.root", "migstream.cli.startup", "migstream.cli.version", "migstream.cli.jsonout",
        "migstream.cli.progress",
    }  # fmt: skip


def test_extract_of_a_plain_stream_imports_no_numpy(tmp_path):
    """extract's bulk path (the compiled writer) needs no numpy: ~50 ms of its start-up."""
    mods, _ = _imported_by(["extract", str(SAMPLES / "x86-stopped.mig.zst"), "-o", str(tmp_path / "out")])
    assert "migstream.image.ramimage" in mods and (tmp_path / "out" / "manifest.json").exists()
    if fastpath.write_run is not None:  # without the C extension the Python loop uses numpy
        assert not {m for m in mods if m.startswith("numpy")}


def test_version_and_encode_import_no_decoder(tmp_path):
    """The decoder (and its containers) is imported where a stream is read: not for
    --version, nor for `encode` without --template (~7-9 ms of their start-up)."""
    decoding = ("migstream.decode.decoder", "migstream.containers.stream", "migstream.containers.sources")
    mods, out = _imported_by(["--version"])
    assert out.startswith("migstream ") and not mods & set(decoding)
    image = tmp_path / "ram.img"
    image.write_bytes(b"\1" * 4096 + bytes(3 * 4096))
    mods, _ = _imported_by(["encode", str(image), "--block", "pc.ram", "--machine", "pc-i440fx-7.2", "-o",
                            str(tmp_path / "out.mig")])  # fmt: skip
    assert (tmp_path / "out.mig").stat().st_size > 4096 and "migstream.encode.encoder" in mods
    assert not mods & set(decoding)
