"""Each bound in migstream/wire/limits.py: the value right at the limit is accepted,
one step beyond is a StreamError at the right offset, before anything is allocated."""

from __future__ import annotations

import os
import resource
import time

import pytest
from construct import ConstructError

from migstream.decode import devices as devices_module
from migstream.decode.decoder import StreamDecoder
from migstream.errors import StreamError
from migstream.wire import build as w
from migstream.wire import grammar as g
from migstream.wire import limits

C = g.Command
F = g.RamFlag


def decode(data: bytes, **kw):
    dec = StreamDecoder(**kw)
    dec.feed(data)
    dec.feed(b"")
    return list(dec)


def nested_packages(depth: int) -> bytes:
    inner = w.command(C.PING, {"value": 1})
    for _ in range(depth):
        inner = w.command(C.PACKAGED, {"length": len(inner)}) + inner
    return w.file_header() + inner + w.eof()


def test_package_depth():
    evs = decode(nested_packages(limits.MAX_PACKAGE_DEPTH))
    assert sum(type(e).__name__ == "PackageEnd" for e in evs) == limits.MAX_PACKAGE_DEPTH
    with pytest.raises(StreamError, match="nested too deep") as info:
        decode(nested_packages(limits.MAX_PACKAGE_DEPTH + 1))
    assert info.value.offset == 8 + 9 * limits.MAX_PACKAGE_DEPTH  # the innermost PACKAGED command


def test_idstr_length_is_bounded_by_the_wire():
    # u8 length prefix (qemu_get_counted_string): 255 is the longest name there is.
    assert g.IdStr.subcon.lengthfield.sizeof() == 1 and limits.MAX_IDSTR_LENGTH == 255
    name = "d" * limits.MAX_IDSTR_LENGTH
    data = w.file_header() + w.section_start(3, name, full=True) + b"\x01\x02" + w.footer(3) + w.eof()
    assert decode(data)[1].idstr == name
    with pytest.raises(ConstructError):
        w.section_start(3, name + "d", full=True)  # the grammar cannot even express more


def test_machine_name_length():
    ok = w.file_header() + w.configuration("m" * limits.MAX_MACHINE_NAME) + w.eof()
    assert decode(ok)[1].machine == "m" * limits.MAX_MACHINE_NAME
    bad = w.file_header() + bytes([g.SectionType.CONFIGURATION]) + (limits.MAX_MACHINE_NAME + 1).to_bytes(4, "big")
    with pytest.raises(StreamError, match="machine name") as info:
        decode(bad)
    assert info.value.offset == 9


def test_description_size_is_refused_before_reading():
    head = w.file_header() + w.eof() + bytes([g.SectionType.VMDESCRIPTION])
    # QEMU does not check what follows EOF (docs/validate.md): a warning, not an error.
    dec = StreamDecoder()
    dec.feed(head + (limits.MAX_DESCRIPTION + 1).to_bytes(4, "big"))  # no JSON follows: nothing is read
    dec.feed(b"")
    assert [type(ev).__name__ for ev in dec] == ["FileHeader", "EndOfStream"]
    assert [(off, "exceeds the limit" in msg) for off, msg in dec.warnings if "VMDESCRIPTION" in msg] == [(9, True)]
    text = b"{" + b" " * 98 + b"}"
    assert bytes(decode(head + len(text).to_bytes(4, "big") + text, max_description=100)[-1].json) == text


def test_footer_scan_limit(monkeypatch):
    monkeypatch.setattr(devices_module, "MAX_FOOTER_SCAN", 4096)

    def stream(n):
        return w.file_header() + w.section_start(3, "dev", full=True) + bytes(n) + w.footer(3) + w.eof()

    assert decode(stream(4096))[2].length == 4096
    with pytest.raises(StreamError, match="no footer for section 'dev' within 4096 bytes"):
        decode(stream(4097))


@pytest.mark.parametrize(
    "bits,ok",
    [
        (limits.MIN_TARGET_PAGE_BITS - 1, False),
        (limits.MIN_TARGET_PAGE_BITS, True),
        (12, True),
        (limits.MAX_TARGET_PAGE_BITS, True),
        (limits.MAX_TARGET_PAGE_BITS + 1, False),
        (0xFFFFFFFF, False),
    ],
)
def test_target_page_bits(bits, ok):
    # A machine of no known architecture: only the range is checked, not the
    # architecture's own page bits (decode/sections.py check_machine).
    data = w.file_header() + w.configuration("none", target_page_bits=bits) + w.eof()
    if ok:
        assert decode(data)[1].target_page_bits == bits
    else:
        with pytest.raises(StreamError, match=f"TARGET_PAGE_BITS is {bits}"):
            decode(data)


@pytest.mark.parametrize("page_size", [limits.MIN_PAGE_SIZE // 2, limits.MAX_PAGE_SIZE * 2, 3000])
def test_page_size_option_outside_the_limits(page_size):
    data = w.file_header() + w.section_start(2, "ram") + w.mem_size([("pc.ram", 1 << 20)]) + w.ram_record(F.EOS)
    with pytest.raises(StreamError, match="unusable target page size"):
        decode(data, page_size=page_size)


def test_block_length_limit():
    def stream(length):
        return (
            w.file_header()
            + w.section_start(2, "ram")
            + w.mem_size([("pc.ram", length)])
            + w.ram_record(F.EOS)
            + w.footer(2)
            + w.eof()
        )

    assert decode(stream(limits.MAX_BLOCK_LENGTH))[2].blocks[0].used_length == limits.MAX_BLOCK_LENGTH
    with pytest.raises(StreamError, match="implausibly large"):
        decode(stream(limits.MAX_BLOCK_LENGTH + 4096))


def test_large_blocks_only_reserve_sparse_space(tmp_path):
    """A 1 TiB block with one page written: a 1 TiB sparse file, a few KiB of disk,
    no memory growth (the written-page bitmap is sparse too)."""
    from migstream.tools.extract import extract

    big = 1 << 40
    page = w.ram_record(F.PAGE, big - 4096, block="big", payload={"data": b"\x5a" * 4096})
    data = (
        w.file_header()
        + w.configuration("pc-i440fx-7.2")
        + w.section_start(2, "ram")
        + w.mem_size([("big", big)])
        + w.ram_record(F.EOS)
        + w.footer(2)
        + w.section_part(2, end=True)
        + page
        + w.ram_record(F.EOS)
        + w.footer(2)
        + w.eof()
    )
    src = tmp_path / "big.mig"
    src.write_bytes(data)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = extract(str(src), str(tmp_path / "out"))
    assert result.error is None
    st = os.stat(tmp_path / "out" / result.manifest["blocks"][0]["file"])
    assert st.st_size == big
    assert st.st_blocks * 512 < 1 << 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 << 10  # KiB: < 64 MiB
    with open(tmp_path / "out" / result.manifest["blocks"][0]["file"], "rb") as f:
        f.seek(big - 4096)
        assert f.read() == b"\x5a" * 4096


@pytest.mark.parametrize("addr", [limits.MAX_BLOCK_LENGTH, 1 << 63])
@pytest.mark.parametrize("kind", [F.PAGE, F.ZERO])
def test_page_offset_without_block_list(addr, kind, tmp_path):
    """Found by review: with no MEM_SIZE record (QEMU does not require one) block
    lengths are unknown, and extract wrote a page at offset 2^63 (OverflowError,
    a traceback).  Offsets past the largest block accepted are refused."""
    from migstream.tools.extract import extract

    payload = {"data": bytes(4096)} if kind == F.PAGE else {"fill": 7}
    first = w.ram_record(kind, 0, block="pc.ram", payload=payload)
    recs = first + w.ram_record(kind, addr, payload=payload)  # CONTINUE
    data = (
        w.file_header()
        + w.configuration("pc-i440fx-7.2")
        + w.section_start(2, "ram")
        + w.ram_record(F.EOS)
        + w.footer(2)
        + w.section_part(2)
        + recs
        + w.ram_record(F.EOS)
        + w.footer(2)
        + w.eof()
    )
    with pytest.raises(StreamError, match="Illegal RAM offset") as info:
        decode(data)
    assert info.value.offset == data.index(recs) + len(first) and info.value.addr == addr
    src = tmp_path / "s.mig"
    src.write_bytes(data)
    result = extract(str(src), str(tmp_path / "out"))  # the StreamError, not an exception from pwrite
    assert result.error is not None and "Illegal RAM offset" in result.error.message


def test_block_list_entries():
    """Found by fuzzing review: a MEM_SIZE list whose lengths never cover the total
    was summed from scratch after every entry (quadratic: 1 MiB of empty entries ran
    for minutes).  At most MAX_RAM_BLOCKS entries are read."""
    n = limits.MAX_RAM_BLOCKS
    ok = [(f"b{i}", 4096) for i in range(n)]
    data = w.file_header() + w.section_start(2, "ram") + w.mem_size(ok) + w.ram_record(F.EOS)
    assert len(decode(data + w.footer(2) + w.eof())[2].blocks) == n
    entries = (b"\x00" + bytes(8)) * ((1 << 20) // 9)  # empty names, zero lengths
    data = w.file_header() + w.section_start(2, "ram") + (4096 | F.MEM_SIZE).to_bytes(8, "big") + entries
    t = time.process_time()
    with pytest.raises(StreamError, match=f"more than {n} RAM blocks") as info:
        decode(data)
    assert info.value.offset == 25
    assert time.process_time() - t < 2
