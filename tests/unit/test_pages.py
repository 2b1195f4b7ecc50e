"""decode/pages.py: one page record applied with the loader's semantics and errors,
and each XBZRLE delta decoded exactly once by ``extract`` (the decoder leaves the
check to RamImage, which makes it as it applies the delta)."""

import subprocess
import sys
import zlib

import pytest

from migstream.codecs import xbzrle
from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.decode import pages
from migstream.decode.decoder import StreamDecoder
from migstream.decode.pages import apply_page
from migstream.decode.pages import check_page_record
from migstream.errors import StreamError
from migstream.events import PageRecord
from migstream.tools.extract import extract
from migstream.wire import build as w
from migstream.wire import grammar as g
from support.samples import compare_truth
from support.samples import raw_stream
from support.samples import sample_by_name

F = g.RamFlag
PS = 4096
BAD_DELTA = b"\x00\x05ab"  # a data run of 5 bytes with 2 left in the delta


def ram_stream(records: bytes) -> tuple[bytes, int]:
    """Two blocks; the RAM PART section holds ``records``; (data, offset of records)."""
    blocks = (("pc.ram", 16 * PS), ("vga.vram", 4 * PS))
    head = w.file_header() + w.configuration("pc-i440fx-7.2")
    head += w.section_start(1, "ram") + w.mem_size(blocks) + w.ram_record(F.EOS) + w.footer(1)
    head += w.section_part(1)
    return head + records + w.ram_record(F.EOS) + w.footer(1) + w.eof(), len(head)


def xbzrle_record(addr: int, delta: bytes, block: str = "pc.ram") -> bytes:
    return w.ram_record(F.XBZRLE, addr, block=block, payload={"encoding": 1, "data": delta})


@pytest.fixture
def count_deltas(monkeypatch):
    """Counts calls of the XBZRLE decoder, wherever it is looked up from."""
    calls = []
    real = xbzrle.xbzrle_decode_into

    def counting(src, page):
        calls.append(len(src))
        return real(src, page)

    monkeypatch.setattr(pages, "xbzrle_decode_into", counting)
    monkeypatch.setattr(xbzrle, "xbzrle_decode_into", counting)
    return calls


def test_apply_page_kinds():
    page = bytearray(b"\x07" * PS)
    apply_page(page, int(F.XBZRLE), bytes([4, 2]) + b"ab", offset=0)
    assert page[:8] == b"\x07" * 4 + b"ab\x07\x07"
    apply_page(page, int(F.ZERO), b"", 0x33, offset=0)
    assert page == b"\x33" * PS
    apply_page(page, int(F.PAGE), bytes(range(256)) * 16, offset=0)
    assert page == bytes(range(256)) * 16
    apply_page(page, int(F.COMPRESS_PAGE), zlib.compress(b"\x01" * PS), offset=0)
    assert page == b"\x01" * PS


def test_apply_page_errors_carry_the_record():
    with pytest.raises(StreamError) as info:
        apply_page(bytearray(PS), int(F.XBZRLE), BAD_DELTA, offset=0x40, block="pc.ram", addr=0x2000)
    err = info.value
    assert err.message.startswith("Failed to load XBZRLE page - decode error! (")
    assert (err.offset, err.section, err.block, err.addr) == (0x40, "ram", "pc.ram", 0x2000)
    with pytest.raises(StreamError, match="decompress data failed: zlib stream inflates to 100 bytes, expected 4096"):
        apply_page(bytearray(PS), int(F.COMPRESS_PAGE), zlib.compress(bytes(100)), offset=0x50)
    rec = PageRecord(0x60, int(F.COMPRESS_PAGE), "pc.ram", 0, 0x70, memoryview(b"junk"))
    with pytest.raises(StreamError, match="decompress data failed") as info:
        check_page_record(rec, PS)
    assert info.value.offset == 0x60


def test_extract_decodes_each_delta_once(tmp_path, count_deltas):
    sample = sample_by_name("x86-xbzrle-deltas")
    stream = tmp_path / "s.mig"
    stream.write_bytes(raw_stream(sample))
    with StreamSource(str(stream)) as src:
        dec = open_decoder(src)
        dec.check_deltas = False  # count the records without decoding any delta
        deltas = sum(1 for ev in iter_events(src, dec) if type(ev) is PageRecord and ev.kind == F.XBZRLE)
    assert deltas > 100 and not count_deltas
    result = extract(str(stream), str(tmp_path / "out"))
    assert result.error is None and result.manifest["complete"]
    assert len(count_deltas) == deltas
    compare_truth(sample, tmp_path / "out")


def test_decoder_alone_still_checks_every_delta(count_deltas):
    data, _ = ram_stream(xbzrle_record(0, bytes([1, 1]) + b"x") + xbzrle_record(PS, bytes([2, 1]) + b"y", block=None))
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    list(dec)
    assert len(count_deltas) == 2


@pytest.mark.parametrize("only", [None, {"vga.vram"}])
def test_bad_delta_rejected_alike_by_decoder_extract_and_validate(tmp_path, only):
    good = xbzrle_record(0, bytes([1, 1]) + b"x")
    data, at = ram_stream(good + xbzrle_record(2 * PS, BAD_DELTA, block=None))
    bad_at = at + len(good)
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    with pytest.raises(StreamError) as info:
        list(dec)
    want = info.value
    assert want.offset == bad_at and "decode error" in want.message
    stream = tmp_path / "bad.mig"
    stream.write_bytes(data)
    # extract: the decoder does not check, RamImage does (also for a block left out).
    result = extract(str(stream), str(tmp_path / "out"), blocks=only)
    assert result.error is not None and str(result.error) == str(want)
    assert result.manifest["complete"] is False and result.manifest["error"] == str(want)
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "validate", str(stream)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == str(want)


def test_validate_rejects_bad_compressed_page(tmp_path):
    rec = w.ram_record(F.COMPRESS_PAGE, PS, block="pc.ram", payload={"data": zlib.compress(bytes(PS - 1))})
    data, at = ram_stream(rec)
    stream = tmp_path / "bad.mig"
    stream.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "validate", str(stream)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error at offset 0x{at:x}, section ram, block pc.ram, page 0x1000: "
        "decompress data failed: zlib stream inflates to 4095 bytes, expected 4096"
    )
