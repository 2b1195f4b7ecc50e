"""The loader's device-section header checks (decode/sections.py) on a real capture,
as every command applies them: validate, extract, and the decoder from a pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from migstream.decode.decoder import StreamDecoder
from migstream.errors import StreamError
from migstream.events import SectionStart
from support.oracle import read_sample


@pytest.fixture(scope="module")
def fresh():
    raw = read_sample("x86-fresh-S.mig.zst")
    dec = StreamDecoder()
    dec.feed(raw)
    dec.feed(b"")
    starts = [ev for ev in dec if type(ev) is SectionStart]
    return raw, {ev.idstr: ev for ev in starts}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *args], capture_output=True, text=True)


def _renamed(raw, ev, new: bytes) -> bytes:
    at = ev.offset + 6  # type, be32 section id, u8 length, idstr
    return raw[:at] + new + raw[at + len(new) :]


def test_unknown_device_is_refused_at_its_header_from_a_file_and_from_a_pipe(fresh, tmp_path):
    raw, sec = fresh
    bad = _renamed(raw, sec["apic"], b"apix")
    path = tmp_path / "bad.mig"
    path.write_bytes(bad)
    r = _cli("validate", str(path))
    assert r.returncode == 1
    want = f"error at offset 0x{sec['apic'].offset:x}, section apix: Unknown savevm section or instance 'apix' 0"
    assert want in r.stderr
    # From a pipe the description comes last: the same error, the same offset.
    dec = StreamDecoder()
    dec.feed(bad)
    dec.feed(b"")
    with pytest.raises(StreamError) as info:
        list(dec)
    assert info.value.offset == sec["apic"].offset
    assert "Unknown savevm section or instance 'apix' 0" in info.value.message


def test_version_above_the_described_one_is_refused(fresh, tmp_path):
    raw, sec = fresh
    ev = sec["hpet"]
    at = ev.offset + 6 + len("hpet") + 4
    path = tmp_path / "bad.mig"
    path.write_bytes(raw[:at] + (ev.version_id + 1).to_bytes(4, "big") + raw[at + 4 :])
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert f"savevm: unsupported version {ev.version_id + 1} for 'hpet' v{ev.version_id}" in r.stderr


def test_extract_stops_at_the_same_fault_keeping_what_came_before(fresh, tmp_path):
    raw, sec = fresh
    path = tmp_path / "bad.mig"
    path.write_bytes(_renamed(raw, sec["apic"], b"apix"))
    r = _cli("extract", str(path), "-o", str(tmp_path / "out"))
    assert r.returncode == 1
    assert "Unknown savevm section or instance 'apix' 0" in r.stderr
    # The RAM section came before the device sections: its blocks were written.
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())


def test_without_a_description_validate_says_what_it_could_not_check(fresh, tmp_path):
    raw, sec = fresh
    eof = raw.rindex(b"\x00\x06\x00")  # QEMU_VM_EOF, then the VMDESCRIPTION
    path = tmp_path / "nodesc.mig"
    path.write_bytes(raw[: eof + 1])
    r = _cli("validate", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"ok: {eof + 1} bytes (device instance ids and payload lengths not verified: no description; "
        "names and versions checked against QEMU 7.2 x86_64)"
    )
    # An empty idstr is no device's, description or not.
    path.write_bytes(raw[: sec["apic"].offset + 5] + b"\x00" + raw[sec["apic"].offset + 6 + 4 : eof + 1])
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert "Unknown savevm section or instance '' 0" in r.stderr


def test_configuration_after_the_first_element_is_an_unknown_section_type(fresh, tmp_path):
    raw, sec = fresh
    ev = sec["timer"]
    path = tmp_path / "bad.mig"
    path.write_bytes(raw[: ev.offset] + b"\x07" + raw[ev.offset + 1 :])
    r = _cli("validate", str(path))
    assert r.returncode == 1
    assert f"error at offset 0x{ev.offset:x}: Unknown savevm section type 7" in r.stderr
