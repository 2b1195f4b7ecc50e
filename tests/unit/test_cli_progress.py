"""The status line long commands draw on stderr (--progress; by default only on a
terminal): percentages that grow, redrawn in place, cleared at the end."""

import re
import subprocess
import sys

from support.samples import raw_stream
from support.samples import sample_by_name


def cli(*args):
    # Bytes, decoded by hand: text mode would turn the "\r" redraws into newlines.
    r = subprocess.run([sys.executable, "-m", "migstream.cli", *map(str, args)], capture_output=True)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


def frames(stderr: str) -> list[str]:
    assert stderr.endswith("\r\x1b[K"), repr(stderr[-40:])  # the line is cleared at the end
    return [f.strip() for f in stderr[: -len("\r\x1b[K")].split("\r") if f.strip()]


def test_decoding_and_encoding_progress(tmp_path):
    stream = tmp_path / "s.mig"
    stream.write_bytes(raw_stream(sample_by_name("x86-stopped")))
    r = cli("extract", stream, "-o", tmp_path / "x", "--progress")
    assert r.returncode == 0, r.stderr
    shown = frames(r.stderr)
    assert shown and all(re.fullmatch(r"\d+\.\d%  [\d,]+ MiB  [\d,]+ MiB/s", f) for f in shown), shown

    r = cli("encode", tmp_path / "x", "-o", tmp_path / "e.mig", "--progress")
    assert r.returncode == 0, r.stderr
    shown = frames(r.stderr)
    pages = [re.fullmatch(r"(\d+\.\d)%  ([\d,]+) / ([\d,]+) pages", f) for f in shown]
    assert all(pages), shown
    # The last frame is always drawn: all pages of the image.
    assert pages[-1][1] == "100.0" and pages[-1][2] == pages[-1][3]

    r = cli("extract", stream, "-o", tmp_path / "y", "--no-progress")
    assert r.returncode == 0 and "\r" not in r.stderr
