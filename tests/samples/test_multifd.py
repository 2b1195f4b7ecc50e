"""Multifd channel decoding against real QEMU 7.2 and 10.0 captures.

Byte-exact RAM is checked for every sample in test_samples.py; here: what only
multifd has (channel order, missing channels, packet framing equal to the grammar)
and every way a channel file can be wrong, on real channel files altered in place.
Packet offsets in the altered files are computed here from the layout (64-byte
MultiFDInit_t, 1344-byte RAM packets for 4 KiB pages, nocomp payload
normal_pages * 4096), not taken from the decoder.
"""

import struct
import subprocess
import sys

import pytest

from migstream.containers.multifd import ChannelError
from migstream.containers.multifd import ChannelFile
from migstream.containers.multifd import with_channels
from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.errors import StreamError
from migstream.events import MultifdPacket
from migstream.events import MultifdSync
from migstream.events import RamMarker
from migstream.tools.extract import extract
from migstream.wire import grammar as g
from support.samples import SAMPLES
from support.samples import channel_files
from support.samples import compare_truth
from support.samples import read_zst
from support.samples import sample_by_name

PACKET = 1344


def walk_nocomp(data: bytes):
    """(offset, flags, normal, zero, packet_num) of each packet of a nocomp channel."""
    out = []
    pos = 64
    while pos < len(data):
        magic, _v, flags, _alloc, normal, _next, num, zero = struct.unpack_from(">IIIIIIQI", data, pos)
        assert magic == 0x11223344
        out.append((pos, flags, normal, zero, num))
        pos += PACKET + normal * 4096
    assert pos == len(data)
    return out


def events_of(sample, channels):
    with StreamSource(str(SAMPLES / sample["stream"])) as src:
        dec = open_decoder(src)
        return list(with_channels(iter_events(src, dec), channels, dec)), dec


def write_channels(tmp_path, sample, alter=None):
    """The sample's channel files, decompressed into tmp_path; alter(i, bytearray)."""
    paths = []
    for i, f in enumerate(channel_files(sample)):
        data = bytearray(read_zst(f))
        if alter:
            data = alter(i, data)
        p = tmp_path / f"ch{i}.bin"
        p.write_bytes(data)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("name", ["x86-multifd-nocomp", "q10-multifd-zstd"])
def test_channel_order_does_not_matter(name, tmp_path):
    sample = sample_by_name(name)
    result = extract(str(SAMPLES / sample["stream"]), str(tmp_path), channels=channel_files(sample)[::-1])
    assert result.error is None
    compare_truth(sample, tmp_path)
    # Exactly the stream's blocks (SYNC packets name no block and create no file).
    assert sorted(b["name"] for b in result.manifest["blocks"]) == sorted(b["name"] for b in sample["ram_blocks"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [b["file"] for b in result.manifest["blocks"]] + ["manifest.json"]
    )


@pytest.mark.parametrize(
    "name,sync_kind,points",
    [("x86-multifd-nocomp", g.RamFlag.EOS, 7), ("q10-multifd-nocomp", g.RamFlag.MULTIFD_FLUSH, 6)],
)
def test_one_sync_packet_per_channel_per_sync_point(name, sync_kind, points):
    # 7.2 syncs at every RAM EOS, 10.0 at every MULTIFD_FLUSH (counted in the main stream).
    sample = sample_by_name(name)
    events, _ = events_of(sample, channel_files(sample))
    markers = [e for e in events if type(e) is RamMarker and e.kind == sync_kind]
    syncs = [e for e in events if type(e) is MultifdSync]
    assert len(markers) == len(syncs) == points
    assert [s.offset for s in syncs] == [m.offset for m in markers]
    packets = [e for e in events if type(e) is MultifdPacket]
    for cid in (0, 1):
        assert sum(1 for p in packets if p.channel == cid and p.sync) == points
    # Within a sync point, packets come in packet_num order.
    start = 0
    for s in syncs:
        nums = [p.packet_num for p in packets[start : start + s.packets]]
        assert nums == sorted(nums)
        start += s.packets


def test_zero_pages_listed_in_packets_only_on_qemu10():
    p10 = [
        e
        for e in events_of(sample_by_name("q10-multifd-nocomp"), channel_files(sample_by_name("q10-multifd-nocomp")))[0]
        if type(e) is MultifdPacket
    ]
    p72 = [
        e
        for e in events_of(sample_by_name("x86-multifd-nocomp"), channel_files(sample_by_name("x86-multifd-nocomp")))[0]
        if type(e) is MultifdPacket
    ]
    assert sum(len(p.zero) for p in p10) > 1000
    assert sum(len(p.zero) for p in p72) == 0


def test_packet_matches_grammar():
    """The fast path (struct derived from the grammar) equals construct parsing."""
    sample = sample_by_name("q10-multifd-nocomp")
    data = read_zst(channel_files(sample)[0])
    init = g.MultiFDInit.parse(data[:64])
    assert (init.magic, init.version, init.id) == (g.MULTIFD_MAGIC, 1, 0)
    events, dec = events_of(sample, channel_files(sample))
    ours = [e for e in events if type(e) is MultifdPacket and e.channel == 0]
    for pkt in ours[:10]:
        ref = g.MultiFDPacket.parse(data[pkt.offset : pkt.offset + PACKET], page_size=4096)
        assert ref.packet_num == pkt.packet_num and ref.flags == pkt.flags
        assert ref.normal_pages == len(pkt.normal) and ref.zero_pages == len(pkt.zero)
        assert list(ref.offset[: ref.normal_pages]) == list(pkt.normal)
        assert list(ref.offset[ref.normal_pages : ref.normal_pages + ref.zero_pages]) == list(pkt.zero)
        if pkt.normal:
            assert ref.ramblock.rstrip(b"\0").decode() == pkt.block
            start = pkt.offset + PACKET
            assert bytes(pkt.pages) == data[start : start + len(pkt.normal) * 4096]


def test_without_channels_warns_and_ram_is_incomplete(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")
    result = extract(str(SAMPLES / sample["stream"]), str(tmp_path))
    assert any("--channel" in m for _, m in result.warnings)
    truth = read_zst(SAMPLES / sample["truth"][0]["file"])
    got = (tmp_path / "pc.ram.bin").read_bytes()
    differ = sum(1 for o in range(0, len(truth), 4096) if truth[o : o + 4096] != got[o : o + 4096])
    assert differ > 1000  # the pages were on the channels


# --- bad channel files ------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream.cli", *args], capture_output=True, text=True)


def extract_error(tmp_path, sample, channels):
    result = extract(str(SAMPLES / sample["stream"]), str(tmp_path / "out"), channels=channels)
    assert result.error is not None
    assert result.manifest["complete"] is False
    return result.error


def test_truncated_channel(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[1]))
    data_packets = [p for p in packets if p[2] > 0]
    off = data_packets[3][0]
    cut = off + PACKET + 1000  # inside the payload
    paths = write_channels(tmp_path, sample, lambda i, d: d[:cut] if i == 1 else d)
    err = extract_error(tmp_path, sample, paths)
    assert isinstance(err, ChannelError)
    assert err.file == "ch1.bin" and err.offset == off
    assert "file ends inside a packet payload (1000 of" in err.message
    proc = run_cli("validate", str(SAMPLES / sample["stream"]), "--channel", paths[0], "--channel", paths[1])
    assert proc.returncode == 1
    assert f"error in channel file ch1.bin, offset 0x{off:x}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_channel_ends_before_its_sync(tmp_path):
    sample = sample_by_name("x86-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[0]))
    last_sync = [p for p in packets if p[1] & 1][-1][0]
    paths = write_channels(tmp_path, sample, lambda i, d: d[:last_sync] if i == 0 else d)
    err = extract_error(tmp_path, sample, paths)
    assert err.offset == last_sync
    assert "channel 0 ends before the SYNC packet of sync point 7" in err.message


def test_wrong_init_magic(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")

    def alter(i, d):
        if i == 0:
            d[0:4] = b"QEVM"
        return d

    paths = write_channels(tmp_path, sample, alter)
    proc = run_cli(
        "extract",
        str(SAMPLES / sample["stream"]),
        "-o",
        str(tmp_path / "o"),
        "--channel",
        paths[0],
        "--channel",
        paths[1],
    )
    assert proc.returncode == 1
    assert (
        "error in channel file ch0.bin, offset 0x0: multifd: received packet magic 5145564d expected 11223344"
        in proc.stderr
    )


def test_wrong_packet_magic(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[0]))
    off = packets[5][0]

    def alter(i, d):
        if i == 0:
            d[off : off + 4] = b"\xde\xad\xbe\xef"
        return d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert (err.file, err.offset) == ("ch0.bin", off)
    assert "received packet magic deadbeef, expected 11223344" in err.message


def test_packet_num_gap(tmp_path):
    # QEMU 10 numbers packets 0..N-1 across channels: a renumbered packet is a gap.
    sample = sample_by_name("q10-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[1]))
    off, _f, _n, _z, num = packets[4]

    def alter(i, d):
        if i == 1:
            struct.pack_into(">Q", d, off + 24, num + 1)
        return d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert f"packet_num gap: expected packet {num}, got {num + 1}" in err.message


def test_missing_channel_is_detected_by_numbering():
    sample = sample_by_name("q10-multifd-nocomp")
    with pytest.raises(ChannelError, match="packet_num gap"):
        events_of(sample, channel_files(sample)[:1])


def test_channel_id_beyond_channel_count():
    sample = sample_by_name("q10-multifd-nocomp")
    with pytest.raises(ChannelError, match="received channel id 1 is greater than number of channels 1"):
        events_of(sample, channel_files(sample)[1:])


@pytest.mark.parametrize(
    "field_off,value,message",
    [
        (12, 0xFFFFFFFF, "received packet with 4294967295 pages, expected 128"),  # pages_alloc
        (16, 129, "received packet with 129 non-zero pages, which exceeds maximum expected pages 128"),
        (32, 0xFFFF, "zero pages, expected maximum"),  # zero_pages
    ],
)
def test_hostile_packet_counts(tmp_path, field_off, value, message):
    sample = sample_by_name("q10-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[0]))
    off = [p for p in packets if p[2] > 0][1][0]

    def alter(i, d):
        if i == 0:
            struct.pack_into(">I", d, off + field_off, value)
        return d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert (err.file, err.offset) == ("ch0.bin", off)
    assert message in err.message


def test_offset_beyond_block(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")
    packets = walk_nocomp(read_zst(channel_files(sample)[0]))
    off = [p for p in packets if p[2] > 0][1][0]

    def alter(i, d):
        if i == 0:
            struct.pack_into(">Q", d, off + 320, 1 << 40)
        return d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert "offset too long 1099511627776" in err.message and err.addr == 1 << 40


def test_hostile_compressed_size(tmp_path):
    sample = sample_by_name("q10-multifd-zlib")
    data = read_zst(channel_files(sample)[0])
    pos = 64
    while True:  # the first packet with pages (zlib: payload = next_packet_size bytes)
        _m, _v, flags, _a, normal, nxt = struct.unpack_from(">IIIIII", data, pos)
        if normal:
            break
        pos += PACKET
    off = pos

    def alter(i, d):
        if i == 0:
            struct.pack_into(">I", d, off + 20, 0xFFFFFFF0)
        return d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert (err.file, err.offset) == ("ch0.bin", off)
    assert "compressed payload of 4294967280 bytes" in err.message


def test_zlib_stream_needs_every_packet(tmp_path):
    """One zlib stream runs through the channel: dropping its first data packet
    breaks the rest, and that is reported, not silently mis-decoded."""
    sample = sample_by_name("x86-multifd-zlib")
    data = read_zst(channel_files(sample)[0])
    pos = 64
    while True:
        _m, _v, flags, _a, normal, nxt = struct.unpack_from(">IIIIII", data, pos)
        if normal:
            break
        pos += PACKET
    end = pos + PACKET + nxt

    def alter(i, d):
        return d[:pos] + d[end:] if i == 0 else d

    err = extract_error(tmp_path, sample, write_channels(tmp_path, sample, alter))
    assert err.file == "ch0.bin" and "zlib payload does not decompress" in err.message


def test_channel_is_a_main_stream(tmp_path):
    sample = sample_by_name("q10-multifd-nocomp")
    with pytest.raises(StreamError, match="not a multifd channel"):
        ChannelFile(str(SAMPLES / sample["stream"]), 4096)


@pytest.mark.parametrize("length", [10, 1000])
def test_device_state_packet_is_skipped(tmp_path, length):
    """A QEMU 10 device-state packet (flag 0x40: header, idstr[256], instance_id,
    next_packet_size, opaque bytes) between RAM packets is framed and skipped."""
    sample = sample_by_name("q10-multifd-nocomp")
    blob = b"\x5a" * length
    dev = struct.pack(">III", g.MULTIFD_MAGIC, g.MULTIFD_VERSION, int(g.MultifdFlag.DEVICE_STATE))
    dev += b"0000:00:02.0/vfio".ljust(256, b"\0") + struct.pack(">II", 0, len(blob)) + blob
    paths = write_channels(tmp_path, sample, lambda i, d: d[:64] + dev + d[64:] if i == 0 else d)
    result = extract(str(SAMPLES / sample["stream"]), str(tmp_path / "out"), channels=paths)
    assert result.error is None
    compare_truth(sample, tmp_path / "out")


def test_info_json_lists_channels(tmp_path):
    sample = sample_by_name("x86-multifd-zstd")
    args = [a for f in channel_files(sample) for a in ("--channel", f)]
    proc = run_cli("info", "--json", str(SAMPLES / sample["stream"]), *args)
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads(proc.stdout)
    chans = doc["multifd_channels"]
    assert [c["id"] for c in chans] == [0, 1]
    assert all(c["compression"] == "zstd" and c["sync_packets"] == doc["multifd_sync_points"] for c in chans)
    # Every pc.ram page the truth has non-zero arrived as a multifd page.
    truth = read_zst(SAMPLES / sample["truth"][0]["file"])
    nonzero = sum(1 for o in range(0, len(truth), 4096) if truth[o : o + 4096].count(0) != 4096)
    assert doc["pages_by_block"]["pc.ram"]["multifd_page"] >= nonzero
