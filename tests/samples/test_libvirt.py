"""libvirt save images (virsh save): header, domain XML, every stored format, and
the faults libvirt's own loader (qemu_saveimage.c) rejects.

The byte-exact RAM checks of the committed images run in test_samples.py (they are
listed in samples.json); here: what `info` reports, and bad headers."""

import json
import struct
import subprocess
import sys

import pytest

from migstream.containers.libvirt import SaveImageError
from migstream.containers.libvirt import domain_summary
from migstream.containers.sources import StreamSource
from support.samples import SAMPLES
from support.samples import load_samples
from support.samples import raw_stream

LIBVIRT = [s for s in load_samples() if s.get("kind") == "libvirt-save"]
RAW = next(s for s in LIBVIRT if s["save_image_format"] == "raw")


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "migstream.cli", *args], capture_output=True, text=True, stdin=stdin)


@pytest.fixture(scope="module")
def raw_image(tmp_path_factory):
    p = tmp_path_factory.mktemp("lv") / "raw.img"
    p.write_bytes(raw_stream(RAW))
    return p


def test_all_formats_committed():
    formats = {s["save_image_format"] for s in LIBVIRT}
    assert formats == {"raw", "gzip", "bzip2", "xz", "lzop", "zstd"}


@pytest.mark.parametrize("name", [s["name"] for s in LIBVIRT])
def test_info_reports_header_and_domain(name, tmp_path):
    sample = next(s for s in LIBVIRT if s["name"] == name)
    path = SAMPLES / sample["stream"]
    if path.name.endswith(".zst"):
        path = tmp_path / "img"
        path.write_bytes(raw_stream(sample))
    proc = cli("info", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    lv = doc["libvirt"]
    hdr = sample["header"]  # read with struct by the capture script, not by migstream
    assert lv["complete"] is True
    assert lv["format"] == sample["save_image_format"]
    assert lv["was_running"] == bool(hdr["was_running"])
    assert lv["data_len"] == hdr["data_len"]
    assert lv["cookie_offset"] == hdr["cookie_offset"]
    assert lv["stream_offset"] == 92 + hdr["data_len"]
    assert lv["domain"]["name"] == sample["domain"]["name"]
    assert lv["domain"]["uuid"] == sample["domain"]["uuid"]
    assert lv["domain"]["memory"] == sample["domain"]["memory_kib"] * 1024
    assert doc["machine"].startswith("pc-i440fx-")
    assert doc["ram_complete"] is True
    text = cli("info", str(path)).stdout
    assert "migstream-lvd" in text and f"format {sample['save_image_format']}" in text


def test_raw_image_offsets_are_stream_offsets(raw_image):
    """Offsets in `records` are inside the QEMU stream: the header record is at 0."""
    proc = cli("records", "--json", str(raw_image))
    first = json.loads(proc.stdout.splitlines()[0])
    assert first == {"schema": 1, "offset": 0, "event": "header", "version": 3}


def _patched(raw_image, tmp_path, **fields):
    data = bytearray(raw_image.read_bytes())
    offs = {"magic": 0, "version": 16, "data_len": 20, "was_running": 24, "format": 28}
    for k, v in fields.items():
        if k == "magic":
            data[0:16] = v
        else:
            struct.pack_into("<I", data, offs[k], v)
    p = tmp_path / "patched.img"
    p.write_bytes(bytes(data))
    return p


def test_partial_image_is_reported_incomplete(raw_image, tmp_path):
    # What libvirt leaves behind when a save does not finish: the header still says "Part".
    p = _patched(raw_image, tmp_path, magic=b"LibvirtQemudPart")
    doc = json.loads(cli("info", "--json", str(p)).stdout)
    assert doc["libvirt"]["complete"] is False
    assert "INCOMPLETE" in cli("info", str(p)).stdout
    v = cli("validate", str(p))
    assert v.returncode == 1 and "incomplete" in v.stderr
    out = tmp_path / "x"
    e = cli("extract", str(p), "-o", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["libvirt"]["complete"] is False
    assert "incomplete" in e.stderr


def test_bad_magic(raw_image, tmp_path):
    p = _patched(raw_image, tmp_path, magic=b"LibvirtQemudXXXX")
    r = cli("info", str(p))
    assert r.returncode == 2
    assert "image magic is incorrect" in r.stderr and "Traceback" not in r.stderr


def test_unsupported_format(raw_image, tmp_path):
    r = cli("validate", str(_patched(raw_image, tmp_path, format=9)))
    assert r.returncode == 2 and "unsupported save image format: 9" in r.stderr
    # format 6 (sparse) is read: tests/qemu/test_qemu_libvirt_sparse.py


def test_unsupported_version(raw_image, tmp_path):
    r = cli("validate", str(_patched(raw_image, tmp_path, version=3)))
    assert r.returncode == 2 and "version" in r.stderr


def test_hostile_data_len(raw_image, tmp_path):
    r = cli("validate", str(_patched(raw_image, tmp_path, data_len=0xFFFFFFF0)))
    assert r.returncode == 2 and "invalid header data length" in r.stderr


@pytest.mark.parametrize("cut", [10, 91, 92 + 100])
def test_truncated_header_or_xml(raw_image, tmp_path, cut):
    p = tmp_path / "cut.img"
    p.write_bytes(raw_image.read_bytes()[:cut])
    r = cli("info", str(p))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr
    assert "truncated" in r.stderr or "magic" in r.stderr


def test_truncated_stream_inside_image(raw_image, tmp_path):
    data = raw_image.read_bytes()
    p = tmp_path / "cut.img"
    p.write_bytes(data[: len(data) // 2])
    r = cli("validate", str(p))
    assert r.returncode == 1 and "error at offset" in r.stderr


def test_big_endian_header(raw_image, tmp_path):
    """An image from a big-endian host: libvirt byte-swaps when version > 2."""
    data = bytearray(raw_image.read_bytes())
    fields = struct.unpack_from("<5I", data, 16)
    struct.pack_into(">5I", data, 16, *fields)
    p = tmp_path / "be.img"
    p.write_bytes(bytes(data))
    doc = json.loads(cli("info", "--json", str(p)).stdout)
    assert doc["libvirt"]["byte_order"] == "big"
    assert doc["libvirt"]["data_len"] == fields[1]


def test_corrupt_compressed_stream(tmp_path):
    sample = next(s for s in LIBVIRT if s["save_image_format"] == "lzop")
    data = bytearray((SAMPLES / sample["stream"]).read_bytes())
    start = 92 + sample["header"]["data_len"]
    data[start + 2000 : start + 2100] = bytes(100)
    p = tmp_path / "bad.img"
    p.write_bytes(bytes(data))
    r = cli("validate", str(p))
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr


def test_source_streams_compressed_images_in_chunks():
    """Decompression is streamed: chunks are bounded, the image is never read whole."""
    sample = next(s for s in LIBVIRT if s["save_image_format"] == "xz")
    with StreamSource(str(SAMPLES / sample["stream"])) as src:
        sizes = [len(c) for c in src.chunks()]
    assert len(sizes) > 1 and max(sizes) <= 4 << 20
    assert sum(sizes) > 8 << 20


def test_domain_summary_units():
    xml = "<domain type='kvm'><name>a</name><memory unit='GiB'>2</memory><vcpu>3</vcpu></domain>"
    assert domain_summary(xml)["memory"] == 2 << 30
    assert domain_summary("<domain><memory>1024</memory></domain>")["memory"] == 1 << 20
    assert domain_summary("not xml")["name"] is None


def test_save_image_error_is_usage_error():
    from migstream.errors import UsageError

    assert issubclass(SaveImageError, UsageError)


def test_raw_image_windows_released_at_page_boundaries(raw_image, tmp_path, monkeypatch):
    """The raw image's stream starts at an unaligned file offset (92 + data_len): the
    mmap windows handed out and released past it must still cover it exactly."""
    import migstream.containers.sources as sources
    from migstream.tools.extract import extract
    from support.samples import read_zst

    monkeypatch.setattr(sources, "WINDOW", 1 << 20)
    result = extract(str(raw_image), str(tmp_path))
    assert result.error is None and result.manifest["complete"]
    truth = read_zst(SAMPLES / RAW["truth"][0]["file"])
    got = (tmp_path / "pc.ram.bin").read_bytes()
    lo, hi = RAW["truth"][0]["exclude"][0]
    assert got[:lo] == truth[:lo] and got[hi:] == truth[hi:]


def test_index_reads_back_inside_a_raw_image(raw_image):
    """The TUI's index reads records back at stream offsets: inside an uncompressed save
    image the stream starts after libvirt's header and XML, so a read at offset 0 is the
    stream's "QEVM", and every page read back is the page the decoder saw."""
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import PageRecord
    from migstream.events import PageRun
    from migstream.tools.index import RowKind
    from migstream.tools.index import StreamIndex
    from migstream.wire.grammar import RamFlag

    stream = raw_image.read_bytes()[92 + RAW["header"]["data_len"] :]
    dec = StreamDecoder()
    dec.feed(stream)
    dec.feed(b"")
    pages = {}  # record offset in the stream -> the page it carries (PAGE, or ZERO's fill)
    for ev in dec:
        if isinstance(ev, PageRun):
            for i in range(ev.count):
                page = ev.page(i) if ev.kinds[i] == RamFlag.PAGE else bytes([ev.fill(i)]) * ev.page_size
                pages[ev.offset + ev.starts[i]] = bytes(page)
        elif isinstance(ev, PageRecord) and ev.kind in (RamFlag.PAGE, RamFlag.ZERO):
            pages[ev.offset] = bytes(ev.data) if ev.kind == RamFlag.PAGE else bytes([ev.fill]) * 4096
    idx = StreamIndex(str(raw_image))
    try:
        for _ in idx.scan():
            pass
        assert idx.complete and idx.error is None and idx.read(0, 4) == b"QEVM"
        r = idx.rows()
        checked = 0
        for row in range(r.count):
            if r.kind[row] == RowKind.PAGE and int(r.offset[row]) in pages and checked < 200:
                assert idx.page_content(row) == pages[int(r.offset[row])], int(r.offset[row])
                checked += 1
        assert checked == 200
    finally:
        idx.close()
