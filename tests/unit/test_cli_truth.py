"""Outputs that never lie (issue 16, part 1): a file that is not a migration stream
makes every reading command fail with one line on stderr, nothing on stdout and no
output left behind; bad option values are usage errors; a multifd main channel
without its channels is never called valid or complete; bzip2 input works.

The command x input matrix runs in-process (typer's CliRunner, one run ~ms) so that
its 66 cases stay cheap; a few cases run as real subprocesses too."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migstream.cli import app
from support.samples import ROOT
from support.samples import channel_files
from support.samples import read_zst
from support.samples import sample_by_name

TEXT = b"Meeting notes\nQEVM is the magic of a migration stream.\n"

#: Files that are not migration streams (nor containers of one).
NOT_STREAMS = {
    "text": lambda: TEXT,
    "empty": lambda: b"",
    "random": lambda: bytes((i * 7919 + 13) % 251 for i in range(5000)),
    "elf": lambda: Path(os.path.realpath(sys.executable)).read_bytes()[:65536],
    "text.gz": lambda: gzip.compress(TEXT),
    "text.bz2": lambda: bz2.compress(TEXT),
}


def _commands(bad: str, out: Path, raw_image: Path) -> dict[str, list[str]]:
    """Each command reading ``bad``, writing (if it writes) under ``out``."""
    return {
        "info": ["info", bad],
        "records": ["records", bad],
        "validate": ["validate", bad],
        "extract": ["extract", bad, "-o", str(out / "x")],
        "devices": ["devices", bad],
        "report": ["report", bad, "-o", str(out / "r.html")],
        "diff": ["diff", bad, bad],
        "transcode": ["transcode", bad, "-o", str(out / "t.mig")],
        "rewrite": ["rewrite", bad, "-o", str(out / "w.mig"), "--patch-hex", "pc.ram:0=00"],
        "encode --template": [
            "encode",
            str(raw_image),
            "--block",
            "pc.ram",
            "--template",
            bad,
            "-o",
            str(out / "e.mig"),
        ],
        "tui": ["tui", bad],
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("not-streams")
    paths = {}
    for name, make in NOT_STREAMS.items():
        p = d / name
        p.write_bytes(make())
        paths[name] = p
    raw_image = d / "pc.ram.img"
    raw_image.write_bytes(bytes(1 << 16))
    return paths, raw_image


CASES = [(inp, cmd) for inp in NOT_STREAMS for cmd in _commands("-", Path("."), Path("."))]


@pytest.mark.parametrize(("inp", "cmd"), CASES, ids=[f"{c}-{i}" for i, c in CASES])
def test_a_non_stream_makes_every_command_fail_cleanly(inputs, tmp_path, inp, cmd):
    paths, raw_image = inputs
    out = tmp_path / "out"
    out.mkdir()
    args = _commands(str(paths[inp]), out, raw_image)[cmd]
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (1, 2), (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert sorted(os.listdir(out)) == [], "output left behind"
    assert sorted(os.listdir(paths[inp].parent)) == sorted([*NOT_STREAMS, raw_image.name])


def test_the_matrix_as_real_processes(inputs, tmp_path):
    """The same as subprocesses for a few cells: what a shell user sees."""
    paths, _ = inputs
    for inp, argv in (
        ("text", ["info", str(paths["text"])]),
        ("elf", ["extract", str(paths["elf"]), "-o", str(tmp_path / "x")]),
        ("empty", ["report", str(paths["empty"]), "-o", str(tmp_path / "r.html")]),
        ("random", ["devices", str(paths["random"])]),
    ):
        r = subprocess.run([sys.executable, "-m", "migstream", *argv], capture_output=True, text=True)
        assert r.returncode == 1 and r.stdout == "", (inp, r)
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, (inp, r.stderr)
    assert os.listdir(tmp_path) == []
    r = subprocess.run([sys.executable, "-m", "migstream", "info", "-"], input=TEXT, capture_output=True)
    assert r.returncode == 1 and r.stdout == b"" and b"not a QEMU migration stream" in r.stderr


def test_json_errors_are_objects(inputs):
    paths, _ = inputs
    r = CliRunner().invoke(app, ["info", "--json", str(paths["text"])])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc == {
        "schema": 1,
        "error": r.stderr.strip(),
        "offset": 0,
        "section": None,
        "block": None,
        "page": None,
    }


@pytest.mark.parametrize("value", ["3000", "0", "256", "131072", "-4096"])
def test_a_bad_page_size_is_a_usage_error(inputs, value):
    paths, _ = inputs
    for cmd in ("info", "validate", "records", "report"):
        extra = ["-o", "/nonexistent/r.html"] if cmd == "report" else []
        r = CliRunner().invoke(app, [cmd, str(paths["text"]), f"--page-size={value}", *extra])
        assert r.exit_code == 2 and "--page-size" in r.stderr, (cmd, r.stderr)


def test_standalone_bzip2_stream(tmp_path):
    s = sample_by_name("x86-stopped")
    raw = read_zst(ROOT / "samples" / s["stream"])
    (tmp_path / "s.mig.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "s.mig").write_bytes(raw)
    runner = CliRunner()
    a = runner.invoke(app, ["info", "--json", str(tmp_path / "s.mig.bz2")])
    b = runner.invoke(app, ["info", "--json", str(tmp_path / "s.mig")])
    assert a.exit_code == 0, a.stderr
    assert json.loads(a.stdout)["records"] == json.loads(b.stdout)["records"]
    assert runner.invoke(app, ["validate", str(tmp_path / "s.mig.bz2")]).exit_code == 0


def test_text_starting_with_bzh_is_not_bzip2(tmp_path):
    p = tmp_path / "notes"
    p.write_bytes(b"BZh9 is how a bzip2 file starts\n")
    r = CliRunner().invoke(app, ["info", str(p)])
    assert r.exit_code == 1 and "not a QEMU migration stream" in r.stderr


@pytest.fixture(scope="module")
def multifd_main(tmp_path_factory):
    """QEMU 7.2's multifd main channel (no marker of multifd in it) and its channels."""
    s = sample_by_name("x86-multifd-nocomp")
    d = tmp_path_factory.mktemp("multifd")
    main = d / "main.mig"
    main.write_bytes(read_zst(ROOT / "samples" / s["stream"]))
    return main, [str(c) for c in channel_files(s)]


def test_a_multifd_main_channel_alone_is_never_valid_or_complete(multifd_main, tmp_path):
    main, channels = multifd_main
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(main)])
    assert r.exit_code == 1 and r.stdout == "" and "RAM incomplete" in r.stderr and "pc.ram 2048" in r.stderr
    assert "needs its channel files (--channel)" in r.stderr
    r = runner.invoke(app, ["info", "--json", str(main)])
    doc = json.loads(r.stdout)
    assert doc["ram_complete"] is False and doc["pages_never_sent"]["pc.ram"] == 2048
    assert doc["multifd_main_alone"] is True
    r = runner.invoke(app, ["report", str(main), "-o", str(tmp_path / "r.html")])
    page = (tmp_path / "r.html").read_text()
    assert r.exit_code == 1 and "Incomplete." in page and "Valid:" not in page
    r = runner.invoke(app, ["extract", str(main), "-o", str(tmp_path / "x")])
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["complete"] is False and "RAM incomplete" in r.stderr
    # With its channels, each of them says the stream is whole.
    chan = [a for c in channels for a in ("--channel", c)]
    assert runner.invoke(app, ["validate", str(main), *chan]).exit_code == 0
    doc = json.loads(runner.invoke(app, ["info", "--json", str(main), *chan]).stdout)
    assert doc["ram_complete"] is True and doc["pages_never_sent"] == {}
    r = runner.invoke(app, ["report", str(main), "-o", str(tmp_path / "r2.html"), *chan])
    assert r.exit_code == 0 and "Valid:" in (tmp_path / "r2.html").read_text()


def test_a_capture_directory_brings_its_channels(multifd_main, tmp_path):
    main, channels = multifd_main
    d = tmp_path / "cap"
    d.mkdir()
    shutil.copy(main, d / "main.mig")
    files = [{"index": 0, "kind": "main", "file": "main.mig"}]
    for i, c in enumerate(channels):
        shutil.copy(c, d / f"ch{i}.zst")
        files.append({"index": i + 1, "kind": "multifd", "file": f"ch{i}.zst"})
    (d / "capture.json").write_text(json.dumps({"channels": files}))
    runner = CliRunner()
    for args in (["validate", str(d)], ["report", str(d), "-o", str(tmp_path / "r.html")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.stderr)


def test_json_errors_after_output_keep_the_format(tmp_path):
    """A fault part-way: records --json ends with one error line, extract --json
    carries the error object in its document."""
    s = sample_by_name("x86-stopped")
    cut = tmp_path / "cut.mig"
    cut.write_bytes(read_zst(ROOT / "samples" / s["stream"])[:300000])
    runner = CliRunner()
    r = runner.invoke(app, ["records", "--json", str(cut)])
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and lines[0]["event"] == "header"
    last = lines[-1]
    assert "event" not in last and last["error"] == r.stderr.strip() and last["offset"] > 0x40000
    assert set(last) == {"schema", "error", "offset", "section", "block", "page"}
    r = runner.invoke(app, ["extract", "--json", str(cut), "-o", str(tmp_path / "x")])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["complete"] is False and doc["error"]["offset"] == last["offset"]
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())["error"].startswith("error at offset")


def test_pages_left_out_of_a_plain_stream_are_no_multifd_matter(tmp_path):
    """A real stream with one PAGE record cut out (QEMU loads it: the page keeps the
    destination's contents): every command says RAM is incomplete, and none of them
    blames missing multifd channel files."""
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import PageRun
    from migstream.wire.grammar import RamFlag

    raw = read_zst(ROOT / "samples" / sample_by_name("x86-stopped")["stream"])
    dec = StreamDecoder()
    dec.feed(raw)
    dec.feed(b"")
    run = next(ev for ev in dec if isinstance(ev, PageRun) and ev.kinds.find(RamFlag.PAGE, 1, ev.count - 1) > 0)
    i = run.kinds.find(RamFlag.PAGE, 1, run.count - 1)  # a PAGE record inside the run
    start, end = run.offset + run.starts[i], run.offset + run.starts[i + 1]
    cut = tmp_path / "cut.mig"
    cut.write_bytes(raw[:start] + raw[end:])
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(cut)])
    assert r.exit_code == 0 and "RAM incomplete: 1 pages never sent" in r.stderr
    doc = json.loads(runner.invoke(app, ["info", "--json", str(cut)]).stdout)
    assert doc["pages_never_sent"] == {"pc.ram": 1} and doc["multifd_main_alone"] is False
    for argv in (["info", str(cut)], ["validate", str(cut)], ["extract", str(cut), "-o", str(tmp_path / "x")]):
        r = runner.invoke(app, argv)
        assert "RAM incomplete" in r.stderr and "multifd" not in r.stderr, argv
