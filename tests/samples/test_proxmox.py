"""Proxmox VE state volumes (`qm snapshot --vmstate`, `qm suspend --todisk`): Proxmox's
savevm-async writes a plain stream from offset 0 of a raw volume sized 2 x RAM + 500 MiB,
so zeros (file/thin storage) or stale bytes (block storage) follow it to the volume's
end; XBZRLE is on.  The volumes here are real QEMU 7.2 XBZRLE captures (samples/
x86-xbzrle) padded that way (a sparse file: cheap).  Debian's QEMU has no pbs-state
section (pve-qemu only), so it is inserted into the real stream as pbs-state.c writes it
(START, be64 length + blob, footer) to check its framing and naming."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from migstream.events import SectionEnd
from migstream.events import SectionStart
from support.samples import compare_truth
from support.samples import raw_stream
from support.samples import sample_by_name

SAMPLE = sample_by_name("x86-xbzrle")
RAM = 64 << 20
VOLUME = 2 * RAM + (500 << 20)  # PVE::QemuServer's state volume size


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def volume(path, stream: bytes, stale: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(stream + stale)
        f.truncate(VOLUME)


@pytest.mark.parametrize("stale", [False, True], ids=["zeros", "stale"])
def test_volume_reports_what_follows_the_stream(tmp_path, stale):
    stream = raw_stream(SAMPLE)
    old = bytes(4096) + os.urandom(1 << 20) if stale else b""  # an older state's bytes, 4 KiB in
    vol = tmp_path / "vm-100-state-snap.raw"
    volume(vol, stream, old)
    r = cli("info", "--json", vol)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    after = doc["after_stream"]
    assert after["offset"] == len(stream) and after["length"] == VOLUME - len(stream)
    if stale:
        assert after["first_nonzero"] == len(stream) + 4096 + next(i for i, b in enumerate(old[4096:]) if b)
        assert [w["offset"] for w in doc["warnings"]] == [len(stream)]
        assert "not all zero" in doc["warnings"][0]["message"]
    else:
        assert after["first_nonzero"] is None and doc["warnings"] == []
    if stale:
        return
    r = cli("info", vol)
    assert f"from 0x{len(stream):x} to the end of the input, all zero" in r.stdout and "warning" not in r.stdout
    r = cli("extract", "-o", tmp_path / "x", vol)
    assert r.returncode == 0, r.stderr
    compare_truth(SAMPLE, tmp_path / "x")


def _insert_pbs_state(stream: bytes, blob: bytes) -> tuple[bytes, int]:
    """The stream with a pbs-state START section after the RAM section's START (its
    place in the setup phase: registered after ram), and where it starts."""
    from migstream.decode.decoder import StreamDecoder

    dec = StreamDecoder()
    dec.feed(stream)
    dec.feed(b"")
    at, ids = None, []
    for ev in dec:  # StreamDecoder iterates its events until NEED_DATA or the end
        if type(ev) is SectionStart:
            ids.append(ev.section_id)
        if type(ev) is SectionEnd and ev.idstr == "ram" and at is None:
            at = ev.offset + 5  # after the footer of ram's START
    sid = max(ids) + 1
    name = b"pbs-state"
    section = (
        b"\x01" + struct.pack(">I", sid) + bytes([len(name)]) + name + struct.pack(">II", 0, 1)
        + struct.pack(">Q", len(blob)) + blob + b"\x7e" + struct.pack(">I", sid)
    )  # fmt: skip
    return stream[:at] + section + stream[at:], at


def test_pbs_state_is_framed_and_named(tmp_path):
    blob = b'{"pbs": "dirty bitmaps"}' + bytes(100) + b"\x7e\x00\x00\x00\x03\x02"  # a footer look-alike inside
    stream, at = _insert_pbs_state(raw_stream(SAMPLE), blob)
    vol = tmp_path / "vm-101-state-suspend.raw"
    volume(vol, stream)
    r = cli("info", vol)
    assert r.returncode == 0, r.stderr
    assert (
        f"pbs-state        at 0x{at + 1 + 4 + 1 + 9 + 8:x}, {len(blob)} bytes of Proxmox Backup Server state"
        in r.stdout
    )
    r = cli("devices", "--json", vol)
    assert r.returncode == 0, r.stderr
    pbs = [s for s in json.loads(r.stdout)["sections"] if s["idstr"] == "pbs-state"]
    assert len(pbs) == 1 and pbs[0]["framing"] == "pbs-state" and pbs[0]["state"] == {"blob_length": len(blob)}
