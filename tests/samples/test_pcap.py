"""Packet captures (pcap, pcapng) of real QEMU 7.2 migrations over TCP
(samples/make_pcap_samples.py): ``extract`` from the capture equals the destination's
RAM (pmemsave) outside the VGA/ROM window, for the captures as tcpdump wrote them and
for the same connections re-cut and re-framed (tests/support/pcapwrite.py): 1448-byte
segments out of order, retransmitted, overlapping, a wrapping sequence space, every
link type, IPv6, both byte orders, several migrations and unrelated traffic in one file.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migstream.containers.pcap import PacketCapture
from support import pcapwrite as pw
from support.samples import SAMPLES
from support.samples import first_difference
from support.samples import read_zst

MANIFEST = json.loads((SAMPLES / "pcap.json").read_text())
BY_NAME = {e["name"]: e for e in MANIFEST}
CAPTURES = [(e["name"], c) for e in MANIFEST for c in e["captures"]]


def run(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def unpacked(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name.removesuffix(".zst")
    out.write_bytes(read_zst(SAMPLES / name))
    return out


def assert_ram(entry: dict, outdir: Path):
    want = read_zst(SAMPLES / entry["ram"])
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["complete"]
    block = next(b for b in manifest["blocks"] if b["name"] == "pc.ram")
    got = (outdir / block["file"]).read_bytes()[: len(want)]
    assert len(got) == len(want) == entry["ram_size"]
    first = first_difference(got, want, entry["exclude"])
    if first is not None:
        pytest.fail(f"{entry['name']}: pc.ram differs from the destination's RAM at 0x{first:x}")


@pytest.mark.parametrize("name,capture", CAPTURES, ids=[c for _n, c in CAPTURES])
def test_extract_from_real_capture_equals_destination_ram(tmp_path, name, capture):
    path = unpacked(tmp_path, capture)
    r = run("extract", path, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert_ram(BY_NAME[name], tmp_path / "out")


@pytest.mark.parametrize("name,capture", CAPTURES[:3], ids=[c for _n, c in CAPTURES[:3]])
def test_compressed_capture_is_read_as_it_is(tmp_path, name, capture):
    """`tcpdump -w - | zstd`: the .zst capture itself (decompressed into a temporary
    file) extracts the destination's RAM; its migrations keep the file's own name."""
    r = run("extract", SAMPLES / capture, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert_ram(BY_NAME[name], tmp_path / "out")
    doc = json.loads(run("info", "--json", SAMPLES / capture).stdout)
    assert doc["capture"]["file"] == str(SAMPLES / capture)


def test_cut_compressed_capture_keeps_what_came_before(tmp_path):
    """A .zst capture cut in half: what decompresses is decoded (as for a cut capture),
    and the fault's offset is said to be in the decompressed bytes, not the file's."""
    data = (SAMPLES / "pcap-plain.pcap.zst").read_bytes()
    cut = tmp_path / "cut.pcap.zst"
    cut.write_bytes(data[: len(data) // 2])
    r = run("info", cut)
    assert r.returncode == 1 and "machine          pc-i440fx-7.2" in r.stdout and "Traceback" not in r.stderr
    assert f"error in capture {cut} at offset 0x" in r.stderr and "of its decompressed bytes" in r.stderr


def test_damaged_compressed_capture_is_one_line_error(tmp_path):
    data = bytearray((SAMPLES / "pcap-plain.pcap.zst").read_bytes())
    data[40:60] = bytes(20)  # inside the first zstd block
    bad = tmp_path / "bad.pcap.zst"
    bad.write_bytes(data)
    r = run("info", bad)
    assert r.returncode != 0 and r.stdout == "", r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(bad) in r.stderr


def test_info_names_the_channels_of_a_real_multifd_capture(tmp_path):
    path = unpacked(tmp_path, "pcap-multifd.pcapng.zst")
    r = run("info", "--json", path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    cap = doc["capture"]
    assert cap["format"] == "pcapng" and cap["link_types"] == ["Ethernet"]
    (mig,) = cap["migrations"]
    assert mig["destination"] == f"127.0.0.1:{BY_NAME['pcap-multifd']['port']}"
    assert [c["id"] for c in mig["multifd_channels"]] == [0, 1]
    assert sum(c["normal_pages"] for c in doc["multifd_channels"]) == doc["records"]["multifd_page"]["count"]


def test_postcopy_capture_finds_the_preempt_channel_and_return_path(tmp_path):
    path = unpacked(tmp_path, "pcap-postcopy.pcap.zst")
    (mig,) = PacketCapture(str(path)).describe()["migrations"]
    assert len(mig["postcopy_preempt"]) == 1
    assert mig["return_path_bytes"] > 0


def test_real_kernel_drops_are_a_gap_with_offset_and_size(tmp_path):
    """tcpdump lost packets while capturing (kernel buffer full); tshark agrees: its
    first "previous segment not captured" is at relative seq 3350690 (stream offset
    3350689 = 0xe0e4f + 2429522)."""
    path = unpacked(tmp_path, "pcap-drops.pcap.zst")
    r = run("extract", path, "-o", tmp_path / "out")
    assert r.returncode == 1
    assert "error at offset 0xe0e4f of connection 127.0.0.1:34360 -> 127.0.0.1:43671: capture gap: " in r.stderr
    assert "2429522 bytes missing" in r.stderr
    assert "Traceback" not in r.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False  # kept what was decoded before the gap


# --- the same connections, re-cut and re-framed ----------------------------------------


def connections(name: str, tmp_path: Path) -> list[pw.Conn]:
    """The connections of a sample's migration (main with its return path, channels)."""
    entry = BY_NAME[name]
    cap = PacketCapture(str(unpacked(tmp_path, entry["captures"][0])))
    (mig,) = cap.migrations
    out = []
    for i, c in enumerate([mig.main, *mig.multifd, *mig.preempt]):
        data = cap.reader(c.forward).read()
        answer = cap.reader(c.reverse).read() if c.reverse else b""
        out.append(pw.Conn(("10.0.0.1", 50000 + i), ("10.0.0.2", 4444), data, answer))
    return out


VARIANTS = {
    "ethernet-inorder": dict(link=pw.ETHERNET),
    "sll-disorder": dict(link=pw.LINUX_SLL, disorder=0.3),
    "sll2-retransmit": dict(link=pw.LINUX_SLL2, dup=0.2),
    "null-overlap": dict(link=pw.NULL, overlap=0.2),
    "raw-ipv6-all": dict(link=pw.RAW, v6=True, disorder=0.2, dup=0.1, overlap=0.1),
    "ethernet-ipv6-bigendian-nano": dict(link=pw.ETHERNET, v6=True, big_endian=True, nano=True, disorder=0.1),
    "pcapng-bigendian": dict(link=pw.LINUX_SLL2, pcapng=True, big_endian=True, dup=0.1),
    "seq-wrap": dict(link=pw.ETHERNET, wrap=True, disorder=0.1),
}


def write_variant(path: Path, conns, link, v6=False, big_endian=False, nano=False, pcapng=False, wrap=False, **cut):
    if wrap:  # the sequence space wraps inside each stream
        for c in conns:
            c.isn = (1 << 32) - len(c.data) // 2
            c.server_isn = (1 << 32) - 3
    frames = pw.frames(conns, link, v6=v6, **cut)
    with open(path, "wb") as f:
        if pcapng:
            f.write(pw.pcapng_section(link, frames, big_endian=big_endian))
        else:
            pw.write_pcap(f, link, frames, big_endian=big_endian, nano=nano)


@pytest.mark.parametrize("sample", ["pcap-multifd", "pcap-xbzrle"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_recut_capture_extracts_destination_ram(tmp_path, sample, variant):
    path = tmp_path / "v.cap"
    write_variant(path, connections(sample, tmp_path), **VARIANTS[variant])
    r = run("extract", path, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert_ram(BY_NAME[sample], tmp_path / "out")


def test_several_migrations_and_other_traffic(tmp_path):
    """Two sections (pcapng): the multifd migration and the plain one to another port,
    plus an unrelated connection.  ``info`` lists both; other commands want FILE#N."""
    multifd = connections("pcap-multifd", tmp_path)
    plain = connections("pcap-plain", tmp_path)
    for c in plain:
        c.server = ("10.0.0.3", 4445)
    other = pw.Conn(("10.0.0.9", 40000), ("10.0.0.2", 80), b"GET / HTTP/1.0\r\n\r\n" * 100, b"HTTP/1.0 200 OK\r\n")
    path = tmp_path / "two.pcapng"
    path.write_bytes(
        pw.pcapng_section(pw.ETHERNET, pw.frames([*multifd, other], pw.ETHERNET))
        + pw.pcapng_section(pw.LINUX_SLL, pw.frames(plain, pw.LINUX_SLL), big_endian=True)
    )
    r = run("info", path)
    assert r.returncode == 0, r.stderr
    assert "3 TCP connections" not in r.stdout and "2 migrations" in r.stdout
    assert "migration 1   10.0.0.1:50000 -> 10.0.0.2:4444" in r.stdout
    assert "migration 2   10.0.0.1:50000 -> 10.0.0.3:4445" in r.stdout
    r = run("extract", path, "-o", tmp_path / "x")
    assert r.returncode == 2
    assert f"{path} holds 2 migrations; pick one with {path}#N" in r.stderr
    assert "migration 2: 10.0.0.1:50000 -> 10.0.0.3:4445" in r.stderr
    for n, sample in ((1, "pcap-multifd"), (2, "pcap-plain")):
        r = run("extract", f"{path}#{n}", "-o", tmp_path / f"out{n}")
        assert r.returncode == 0, r.stderr
        assert_ram(BY_NAME[sample], tmp_path / f"out{n}")
    r = run("diff", f"{path}#1", f"{path}#2")  # the same stopped guest: only the RTC moved
    assert r.returncode == 1 and "device mc146818rtc instance 0" in r.stdout and "RAM" not in r.stdout, r.stderr
    r = run("validate", f"{path}#3")
    assert r.returncode == 2 and "has no migration 3 (it holds 2)" in r.stderr


def test_snaplen_cut_is_a_gap_that_names_the_snaplen(tmp_path):
    conns = connections("pcap-plain", tmp_path)
    path = tmp_path / "short.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, pw.frames(conns, pw.ETHERNET), snaplen=1000)
    r = run("validate", path)
    assert r.returncode == 1
    # The first data segment holds 1448 bytes; 1000 - 54 header bytes were captured.
    assert "error at offset 0x3b2 of connection 10.0.0.1:50000 -> 10.0.0.2:4444: capture gap: 502 bytes missing" in (
        r.stderr
    )
    assert "cut short by the capture's snaplen" in r.stderr


def test_conflicting_retransmission_is_an_error_at_its_offset(tmp_path):
    (main,) = connections("pcap-plain", tmp_path)
    frames = pw.frames([main], pw.ETHERNET)
    # Retransmit the third data segment (stream offset 2896) with one byte changed at +100.
    seg = bytearray(main.data[2896 : 2896 + 1448])
    seg[100] ^= 0xFF
    bad = pw.frame(
        pw.ETHERNET, pw.tcp_packet("10.0.0.1", "10.0.0.2", 50000, 4444, 1001 + 2896, 0, 0x18, bytes(seg), False), False
    )
    frames.insert(10, bad)
    path = tmp_path / "conflict.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, frames)
    r = run("info", path)
    assert r.returncode == 1
    assert "error at offset 0xbb4 of connection 10.0.0.1:50000 -> 10.0.0.2:4444: capture holds conflicting" in r.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["records"],
        ["validate"],
        ["devices"],
        ["report", "-o", "{tmp}/r.html"],
        ["transcode", "-o", "{tmp}/t.mig"],
        ["rewrite", "-o", "{tmp}/rw.mig", "--patch-hex", "pc.ram:0x1000=deadbeef"],
        ["diff", "{other}"],
        ["encode", "{tmp}/ram", "--template"],
    ],
    ids=lambda c: c[0],
)
def test_every_reading_command_takes_a_capture(tmp_path, command):
    path = unpacked(tmp_path, "pcap-multifd.pcap.zst")
    other = unpacked(tmp_path, "pcap-plain.pcap.zst")
    args = [a.format(tmp=tmp_path, other=other) for a in command]
    if command[0] == "encode":
        assert run("extract", path, "-o", tmp_path / "ram").returncode == 0
        args += [str(path), "-o", str(tmp_path / "e.mig")]
    else:
        args.insert(1, str(path))
    r = run(*args)
    if command[0] == "diff":  # two migrations of the same stopped guest: only the RTC moved
        assert r.returncode == 1 and "device mc146818rtc instance 0" in r.stdout, r.stderr
        return
    assert r.returncode == 0, r.stderr
    if command[0] == "transcode":  # the multifd pages came from the channel connections
        assert "pages            normal 49" in r.stdout


def test_tui_index_reads_multifd_pages_from_the_capture(tmp_path):
    """The TUI's index takes the capture's channels and reads page contents back from
    the multifd connections (PacketReader through the capture)."""
    from migstream.tools.index import StreamIndex

    path = unpacked(tmp_path, "pcap-multifd.pcap.zst")
    assert run("extract", path, "-o", tmp_path / "out").returncode == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    blocks = {b["name"]: (tmp_path / "out" / b["file"]).read_bytes() for b in manifest["blocks"]}
    ix = StreamIndex(str(path))
    try:
        for _ in ix.scan():
            pass
        assert ix.complete and ix.error is None
        rows = [r for r in range(ix.count) if ix.packet_of_row(r) is not None]
        assert len(rows) == 49
        for r in rows:
            d = ix.detail(r)
            assert ix.page_content(r) == blocks[d.block][d.addr : d.addr + 4096]
    finally:
        ix.close()


def test_two_migrations_to_one_port_keep_their_own_channels(tmp_path):
    """The same destination port twice (a migration, then another): each main
    connection gets the multifd connections that came with it."""
    first = connections("pcap-multifd", tmp_path)
    second = connections("pcap-multifd", tmp_path)
    for i, c in enumerate(second):
        c.client = ("10.0.0.1", 51000 + i)
    path = tmp_path / "again.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, pw.frames(first, pw.ETHERNET) + pw.frames(second, pw.ETHERNET))
    mig = PacketCapture(str(path)).describe()["migrations"]
    assert [m["source"] for m in mig] == ["10.0.0.1:50000", "10.0.0.1:51000"]
    assert [c["source"] for c in mig[1]["multifd_channels"]] == ["10.0.0.1:51001", "10.0.0.1:51002"]
    r = run("extract", f"{path}#2", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert_ram(BY_NAME["pcap-multifd"], tmp_path / "out")


def test_capture_begun_after_the_connection_opened(tmp_path):
    (main,) = connections("pcap-plain", tmp_path)
    frames = pw.frames([main], pw.ETHERNET)[5:]  # no handshake, no first segments
    path = tmp_path / "late.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, frames)
    r = run("info", path)
    assert r.returncode == 2
    assert "no QEMU migration in this pcap capture" in r.stderr and "1 without their SYN" in r.stderr
