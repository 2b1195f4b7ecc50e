"""Every loader check yields a StreamError with the offset of the faulty element;
hostile sizes neither allocate nor hang; truncation is always a clean error."""

import json
import subprocess
import sys
import time
import zlib

import pytest

from migstream.decode.decoder import StreamDecoder
from migstream.errors import StreamError
from migstream.errors import TruncatedStream
from migstream.wire import build as w
from migstream.wire import grammar as g

F = g.RamFlag
C = g.Command
PS = 4096


def decode(data: bytes):
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    return list(dec)


def ram_stream(records: bytes, blocks=(("pc.ram", 16 * PS),), footer=True) -> tuple[bytes, int]:
    """A stream whose RAM PART section holds ``records``; returns (data, offset of records)."""
    head = w.file_header() + w.configuration("pc-i440fx-7.2")
    head += w.section_start(1, "ram") + w.mem_size(blocks) + w.ram_record(F.EOS) + (w.footer(1) if footer else b"")
    head += w.section_part(1)
    tail = w.ram_record(F.EOS) + (w.footer(1) if footer else b"") + w.eof()
    return head + records + tail, len(head)


def page(addr, block="pc.ram", kind=F.PAGE, **payload):
    if kind == F.PAGE and not payload:
        payload = {"data": bytes(PS)}
    if kind == F.ZERO and not payload:
        payload = {"fill": 0}
    return w.ram_record(kind, addr, block=block, payload=payload)


def expect_error(data, message, offset=None):
    with pytest.raises(StreamError) as info:
        decode(data)
    assert message in info.value.message
    if offset is not None:
        assert info.value.offset == offset, f"0x{info.value.offset:x} != 0x{offset:x}"
    return info.value


def test_valid_base_stream_decodes():
    data, _ = ram_stream(page(0) + page(PS, block=None))
    assert decode(data)


def test_bad_magic():
    expect_error(b"QEVX" + bytes(4), "not a QEMU migration stream", 0)


def test_obsolete_version():
    expect_error(w.file_header(version=2), "SaveVM v2 format is obsolete", 4)


def test_unknown_section_type():
    data = w.file_header() + bytes([0x55])
    expect_error(data, "Unknown savevm section type 85", 8)


def test_part_of_unknown_section():
    data = w.file_header() + w.section_part(9)
    expect_error(data, "Unknown savevm section 9", 8)


def test_missing_footer():
    data, at = ram_stream(b"")
    # Drop the footer of the PART section (the first section had one).
    eos = at
    data = data[: eos + 8] + data[eos + 8 + 5 :]
    expect_error(data, "Missing section footer for ram", eos + 8)


def test_mismatched_footer():
    data, at = ram_stream(b"")
    data = data[: at + 8] + w.footer(7) + data[at + 13 :]
    expect_error(data, "Mismatched section id in footer for ram - read 0x7 expected 0x1", at + 8)


def test_streams_without_footers_decode():
    data, _ = ram_stream(page(0), footer=False)
    evs = decode(data)
    assert any(type(e).__name__ == "EndOfStream" for e in evs)


@pytest.mark.parametrize("flags", [0x01, F.PAGE | F.ZERO, F.MEM_SIZE | F.EOS, 0x400 - 1])
def test_unknown_flag_combinations(flags):
    data, at = ram_stream(g.Int64ub.build(flags))
    expect_error(data, f"Unknown combination of migration flags: 0x{flags:x}", at)


def test_continue_without_block():
    data, at = ram_stream(page(0, block=None))
    expect_error(data, "Ack, bad migration stream!", at)


def test_unknown_block():
    data, at = ram_stream(page(0, block="nope"))
    err = expect_error(data, "Can't find block nope", at)
    assert err.block == "nope"


def test_illegal_offset():
    data, at = ram_stream(page(0) + page(16 * PS, block=None))
    err = expect_error(data, "Illegal RAM offset 10000", at + 8 + 7 + PS)
    assert err.addr == 16 * PS


def test_illegal_offset_inside_a_run():
    recs = page(0) + b"".join(page(i * PS, block=None) for i in range(1, 17))
    data, at = ram_stream(recs)
    expect_error(data, "Illegal RAM offset 10000", at + 8 + 7 + PS + 15 * (8 + PS))


def test_xbzrle_wrong_encoding():
    data, at = ram_stream(page(0, kind=F.XBZRLE, encoding=2, data=b"\x00\x01x"))
    expect_error(data, "wrong compression", at)


def test_xbzrle_len_overflow():
    rec = g.Int64ub.build(F.XBZRLE) + b"\x06pc.ram" + b"\x01" + g.Int16ub.build(PS + 1) + bytes(PS + 1)
    data, at = ram_stream(rec)
    expect_error(data, "len overflow", at)


@pytest.mark.parametrize("delta", [b"\x00", b"\x00\x00", b"\x05\x01x\x00\x01y", b"\x00\x05ab", b"\xff\x7f\x01x"])
def test_xbzrle_decode_errors(delta):
    data, at = ram_stream(page(0, kind=F.XBZRLE, encoding=1, data=delta))
    expect_error(data, "decode error", at)


def test_compressed_length_over_bound():
    rec = g.Int64ub.build(F.COMPRESS_PAGE) + b"\x06pc.ram" + g.Int32ub.build(5000)
    data, at = ram_stream(rec + bytes(5000))
    expect_error(data, "Invalid compressed data length: 5000", at)


def test_ram_section_version():
    data = w.file_header() + w.section_start(1, "ram", version_id=3)
    expect_error(data, "ram section version 3", 8)


def test_mem_size_total_mismatch():
    bad = g.Int64ub.build(0x10000 | F.MEM_SIZE) + b"\x06pc.ram" + g.Int64ub.build(0x20000) + w.ram_record(F.EOS)
    data = w.file_header() + w.section_start(1, "ram") + bad
    expect_error(data, "add up to", 8 + 17)


@pytest.mark.parametrize(
    "cmd,payload,message",
    [
        (C.PING, b"\x00\x00", "PING received with bad length - expecting 4, got 2"),
        (C.OPEN_RETURN_PATH, b"\x00", "OPEN_RETURN_PATH received with bad length"),
        (C.POSTCOPY_ADVISE, bytes(8), "POSTCOPY_ADVISE received with bad length"),
        (0, b"", "MIG_CMD 0x0 unknown"),
        (99, b"", "MIG_CMD 0x63 unknown (len 0x0)"),
        (C.POSTCOPY_RAM_DISCARD, b"\x00\x06pc.ram\x00" + bytes(8), "POSTCOPY_RAM_DISCARD received with bad length"),
    ],
)
def test_command_checks(cmd, payload, message):
    data = (
        w.file_header()
        + bytes([g.SectionType.COMMAND])
        + g.CommandHeader.build({"cmd": cmd, "length": len(payload)})
        + payload
    )
    expect_error(data, message, 8)


def test_hostile_mem_size_does_not_allocate(tmp_path):
    """A 2^60-byte block is refused before anything is allocated."""
    bad = w.mem_size([("pc.ram", 1 << 60)])
    data = w.file_header() + w.section_start(1, "ram") + bad + w.ram_record(F.EOS)
    expect_error(data, "implausibly large", 8 + 17)


def test_hostile_packaged_length_is_bounded():
    data = w.file_header() + w.command(C.PACKAGED, {"length": 0xFFFFFFFF}) + w.command(C.PING, {"value": 1})
    t = time.monotonic()
    with pytest.raises(TruncatedStream):
        decode(data)
    assert time.monotonic() - t < 1


def test_packaged_nested_stream_without_eof():
    inner = w.command(C.POSTCOPY_LISTEN) + w.command(C.PING, {"value": 0x42}) + w.command(C.POSTCOPY_RUN)
    data = w.file_header() + w.command(C.PACKAGED, {"length": len(inner)}) + inner + w.eof()
    names = [type(e).__name__ for e in decode(data)]
    assert names == [
        "FileHeader",
        "CommandEvent",
        "CommandEvent",
        "CommandEvent",
        "CommandEvent",
        "PackageEnd",
        "EndOfStream",
    ]


def test_element_crossing_package_end():
    inner = w.command(C.PING, {"value": 1})
    data = w.file_header() + w.command(C.PACKAGED, {"length": len(inner) - 1}) + inner + w.eof()
    expect_error(data, "past the end of the PACKAGED data")


def test_truncation_at_every_byte_is_a_clean_error():
    recs = (
        page(0)
        + page(PS, block=None, kind=F.ZERO)
        + page(2 * PS, block=None, kind=F.XBZRLE, encoding=1, data=b"\x00\x02ab")
    )
    recs += page(3 * PS, block=None, kind=F.COMPRESS_PAGE, data=zlib.compress(bytes(PS)))
    data, _ = ram_stream(recs)
    data += w.vmdescription(json.dumps({"page_size": PS, "devices": []}).encode())
    eof_at = data.rindex(bytes([g.SectionType.VMDESCRIPTION])) - 1
    for cut in range(len(data)):
        try:
            decode(data[:cut])
        except TruncatedStream as exc:
            assert exc.offset <= cut
        else:
            # Only the VMDESCRIPTION after EOF may be missing or cut
            assert cut > eof_at, f"truncation at {cut} was accepted"


def test_cli_exit_codes_and_partial_extract(tmp_path):
    data, _ = ram_stream(page(0, data=b"\x11" * PS) + page(PS, block=None, data=b"\x22" * PS))
    cut = data[: len(data) - 10]  # inside the final EOS record
    stream = tmp_path / "cut.mig"
    stream.write_bytes(cut)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "extract", str(stream), "-o", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error at offset 0x")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False
    assert (out / "pc.ram.bin").read_bytes()[: 2 * PS] == b"\x11" * PS + b"\x22" * PS

    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "validate", str(stream)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error at offset 0x") and "Traceback" not in proc.stderr

    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "info", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
