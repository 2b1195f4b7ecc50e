"""LiveDecoder: decoding a recording while it grows gives what a decode of the
finished file gives."""

from __future__ import annotations

import random

import pytest

from migstream.capture.live import LiveDecoder
from migstream.capture.live import Throughput
from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.tools.summary import StreamSummary
from support.samples import SAMPLES
from support.samples import read_zst


def full_summary(path) -> dict:
    with StreamSource(str(path)) as src:
        dec = open_decoder(src, use_description=False)
        s = StreamSummary()
        for ev in iter_events(src, dec):
            s.add(ev)
        return s.as_dict()


@pytest.mark.parametrize("name", ["x86-xbzrle", "x86-postcopy", "x86-stopped"])
def test_growing_file_decodes_like_the_whole(tmp_path, name):
    data = read_zst(SAMPLES / f"{name}.mig.zst")
    path = tmp_path / "ch0-main.mig"
    live = LiveDecoder(lambda: str(path) if path.exists() else None)
    assert live.poll() == 0  # nothing recorded yet
    rnd = random.Random(7)
    with open(path, "wb") as f:
        pos = 0
        while pos < len(data):
            step = rnd.choice([1, 7, 4096, 65536, 1 << 20])
            f.write(data[pos : pos + step])
            f.flush()
            pos += step
            live.poll()
    live.poll(final=True)
    st = live.status()
    assert st["error"] is None and st["eof"]
    whole = full_summary(path)
    assert st["records"] == {k: v["count"] for k, v in whole["records"].items()}
    assert st["ram_iterations"] == whole["ram_iterations"]
    assert st["commands"] == whole["commands"]
    assert st["decoded_bytes"] == len(data)
    live.close()


def test_live_decode_error_is_reported_not_raised(tmp_path):
    path = tmp_path / "bad.mig"
    path.write_bytes(b"QEVM\x00\x00\x00\x09")  # unsupported version
    live = LiveDecoder(lambda: str(path))
    live.poll(final=True)
    assert live.status()["error"] and "offset 0x" in live.status()["error"]


def test_throughput_window():
    t = Throughput(window=2.0)
    assert t.add(0, now=0.0) == 0.0
    assert t.add(100, now=1.0) == 100.0
    assert t.add(300, now=2.0) == 150.0
    assert t.add(300, now=10.0) == pytest.approx(0.0)
