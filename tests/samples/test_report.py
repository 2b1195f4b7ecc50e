"""`migstream report`: the HTML page, its page-map images and its rendering.

Expected values come from the plain construct reference decoder
(tests/support/reference.py), not from the code under test."""

import base64
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter

import pytest

from migstream.tools.report import PALETTE
from migstream.wire import grammar as g
from support.reference import reference_records
from support.samples import raw_stream
from support.samples import sample_by_name

F = g.RamFlag
KIND = {F.ZERO: "zero", F.PAGE: "raw", F.XBZRLE: "xbzrle", F.COMPRESS_PAGE: "compressed"}
PALETTE_NAMES = ("never sent", "zero", "raw", "xbzrle", "compressed", "multifd")


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "migstream", *args], capture_output=True, text=True, **kw)


def decode_png(data: bytes):
    """(width, height, palette indices) of a non-interlaced 8-bit palette PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if tag == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8:10] == bytes([8, 3])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[r * (width + 1) : (r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)  # filter type none
    return width, height, b"".join(row[1:] for row in rows)


def last_kinds(data: bytes):
    """Per block: page index -> how it was last sent, and record counts by kind."""
    last, counts, blocks = {}, Counter(), {}
    for item in reference_records(data):
        if item[0] == "mem_size":
            blocks = dict(item[2])
        elif isinstance(item[0], int):
            _, flags, block, addr, _ = item
            kind = KIND[flags & ~F.CONTINUE]
            last.setdefault(block, {})[addr // 4096] = kind
            counts[kind] += 1
    return blocks, last, counts


@pytest.mark.parametrize("name", ["x86-xbzrle", "x86-compress"])
def test_report_page_maps_match_the_reference(name, raw_sample_dir, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", str(raw_sample_dir / (name + ".mig")), "-o", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    blocks, last, counts = last_kinds(raw_stream(sample_by_name(name)))
    for kind, n in counts.items():
        assert re.search(rf"{kind}</td><td class='n'>{n:,}</td>", page), kind
    maps = re.findall(r"<h3>([^<]+) <small>.*?src='data:image/png;base64,([^']+)'", page)
    assert [m[0].replace("&#x27;", "'") for m in maps] == list(blocks)
    for block, png in maps:
        width, height, cells = decode_png(base64.b64decode(png))
        pages = blocks[block] // 4096
        assert width * height >= pages
        expected = bytes(PALETTE_NAMES.index(last.get(block, {}).get(p, "never sent")) for p in range(pages))
        assert cells[:pages] == expected, block
        assert set(cells[pages:]) <= {len(PALETTE)}  # past the end: transparent


def test_invalid_stream_still_gets_a_report(raw_sample_dir, tmp_path):
    data = (raw_sample_dir / "x86-running.mig").read_bytes()
    cut = tmp_path / "cut.mig"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "r.html"
    r = cli("report", str(cut), "-o", str(out))
    assert r.returncode == 1
    assert "error at offset 0x" in r.stderr and "Traceback" not in r.stderr
    page = out.read_text()
    assert "Invalid stream." in page and "error at offset 0x" in page


def test_report_to_stdout_from_stdin(tmp_path):
    from support.samples import SAMPLES

    with open(SAMPLES / "aarch64-virt.mig.zst", "rb") as f:
        r = cli("report", "-", "-o", "-", stdin=f)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<!doctype html>") and "virt-7.2" in r.stdout


def test_report_renders_in_chromium(raw_sample_dir, tmp_path):
    """Headless Chromium renders the page; the screenshot shows the page-map colours."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed (installed by .ci/run)"
    from PIL import Image

    out = tmp_path / "r.html"
    assert cli("report", str(raw_sample_dir / "x86-xbzrle.mig"), "-o", str(out)).returncode == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colours = Counter({rgb: n for n, rgb in img.getcolors(maxcolors=1 << 24)})
    for kind in ("zero", "raw", "xbzrle"):
        rgb = PALETTE[PALETTE_NAMES.index(kind)]
        assert colours[rgb] > 50, kind  # the legend, the bars and the maps show it
    assert colours[(255, 255, 255)] < 0.9 * 1200 * 1600  # not a blank page
