"""Hostile packet captures: truncated records, huge lengths, unknown link types, loops of
zero-length records and blocks, random damage to a real capture.  Each is a one-line
error with an offset (exit 1 for a damaged capture, 2 for one without a migration),
never a traceback; resident memory stays flat on large captures."""

import random
import struct
import subprocess
import sys

import pytest

from migstream.containers.pcap import PacketCapture
from migstream.errors import MigstreamError
from support import pcapwrite as pw
from support.fresh import atheris_run
from support.samples import SAMPLES
from support.samples import read_zst

PLAIN = SAMPLES / "pcap-plain.pcap.zst"


def run(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def one_line(r, code: int) -> str:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def plain() -> bytes:
    return read_zst(PLAIN)


def test_truncated_last_record_keeps_what_came_before(tmp_path, plain):
    path = tmp_path / "cut.pcap"
    path.write_bytes(plain[: len(plain) - 5000])
    r = run("extract", path, "-o", tmp_path / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error in capture {path} at file offset 0x" in r.stderr
    assert "file ends inside a packet record" in r.stderr
    assert (tmp_path / "out" / "manifest.json").exists()


def test_huge_record_length(tmp_path, plain):
    data = bytearray(plain)
    struct.pack_into("<I", data, 24 + 8, 0xFFFFFFF0)  # the first record's caplen
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    line = one_line(run("info", path), 2)
    assert "no QEMU migration in this pcap capture (0 packets" in line
    assert "at file offset 0x18: packet record claims 4294967280 bytes (more than 1048576)" in line


def test_unknown_link_type(tmp_path, plain):
    data = bytearray(plain)
    struct.pack_into("<I", data, 20, 999)
    path = tmp_path / "link.pcap"
    path.write_bytes(bytes(data))
    line = one_line(run("validate", path), 2)
    assert "no QEMU migration" in line and "link types not read: 999" in line


def test_zero_length_records_and_blocks(tmp_path):
    path = tmp_path / "zeros.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, [b""] * 200_000)
    line = one_line(run("info", path), 2)
    assert "(200000 packets, 0 TCP connections)" in line
    ng = tmp_path / "zero-block.pcapng"
    section = pw.pcapng_section(pw.ETHERNET, [])
    ng.write_bytes(section + struct.pack("<II", 6, 0) + bytes(64))
    line = one_line(run("info", ng), 2)
    assert f"at file offset 0x{len(section):x}: pcapng block of type 0x6 has length 0" in line
    loops = tmp_path / "empty-blocks.pcapng"
    loops.write_bytes(section + struct.pack("<III", 0x80000001, 12, 12) * 100_000)
    line = one_line(run("info", loops), 2)
    assert "(0 packets, 0 TCP connections)" in line


def test_pcapng_packet_larger_than_its_block(tmp_path):
    conn = pw.Conn(("10.0.0.1", 1), ("10.0.0.2", 2), b"QEVM\x00\x00\x00\x03" + bytes(100))
    data = bytearray(pw.pcapng_section(pw.ETHERNET, pw.frames([conn], pw.ETHERNET)))
    epb = data.index(struct.pack("<I", 6))
    struct.pack_into("<I", data, epb + 20, 5000)  # captured length
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    line = one_line(run("info", path), 2)
    assert f"at file offset 0x{epb:x}: packet block: 5000 captured bytes do not fit its length" in line


def test_random_damage_never_escapes(tmp_path, plain):
    """Random byte damage in the headers' region of a real capture: the reader either
    reassembles something or raises a migstream error, never anything else."""
    end = 24
    while end < 60_000:  # whole records only
        end += 16 + struct.unpack_from("<I", plain, end + 8)[0]
    head = plain[:end]
    rng = random.Random(14)
    path = tmp_path / "fuzz.pcap"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        data = bytearray(head)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256) if rng.random() < 0.7 else 0xFF
        path.write_bytes(bytes(data))
        try:
            cap = PacketCapture(str(path))
            for m in cap.migrations:
                for c in [m.main, *m.multifd, *m.preempt]:
                    for _chunk in cap.reader(c.forward).chunks():
                        pass
            outcomes["ok"] += 1
        except MigstreamError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]


RSS = """
import resource, sys
from migstream.containers.sources import StreamSource
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
try:
    with StreamSource(sys.argv[1]) as s:
        for chunk in s.chunks():
            n += len(chunk)
except Exception as exc:
    print(type(exc).__name__, file=sys.stderr)
print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10)
"""


def test_memory_stays_flat_on_a_large_capture(tmp_path):
    """128 MiB of stream in 1448-byte segments, disordered: the reader's growth in
    resident memory is a small fraction of it (the index is 20 bytes a segment)."""
    rng = random.Random(1)
    block = b"QEVM" + rng.randbytes((1 << 20) - 4)
    conn = pw.Conn(("10.0.0.1", 1), ("10.0.0.2", 2), block * 128)
    path = tmp_path / "big.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, pw.frames([conn], pw.ETHERNET, disorder=0.01))
    r = subprocess.run([sys.executable, "-c", RSS, str(path)], capture_output=True, text=True)
    n, grew = map(int, r.stdout.split())
    assert n == 128 << 20, r.stderr
    assert grew < 40, f"resident memory grew by {grew} MiB reading 128 MiB"


def test_atheris_bounded_run_on_the_capture_reader(tmp_path):
    pytest.importorskip("atheris")  # a test dependency on x86_64 Linux (pyproject.toml)
    fuzzer = str(SAMPLES.parent / "fuzz" / "fuzz_pcap.py")
    proc = atheris_run(fuzzer, tmp_path, ["-runs=4000", "-max_total_time=8", "-max_len=65536"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and not list(tmp_path.glob("crash-*"))


def test_many_one_packet_flows_are_bounded(tmp_path):
    """Every packet its own TCP flow: the first MAX_FLOWS are indexed, the rest
    counted; memory stays bounded."""
    from migstream.containers.pcap.tcp import MAX_FLOWS

    frames = [
        pw.frame(
            pw.ETHERNET,
            pw.tcp_packet("10.0.0.1", "10.0.0.2", 1 + i % 60000, 2 + i // 60000, 0, 0, 0x18, b"x", False),
            False,
        )
        for i in range(MAX_FLOWS + 5000)
    ]
    path = tmp_path / "flows.pcap"
    with open(path, "wb") as f:
        pw.write_pcap(f, pw.ETHERNET, frames)
    line = one_line(run("info", path), 2)
    assert f"{MAX_FLOWS} TCP connections, 5000 packets of flows beyond the first {MAX_FLOWS} not read" in line


def test_file_cut_after_the_stream_ended_is_no_error(tmp_path, plain):
    """The file ends inside a record, but the migration's FIN came before: the stream is
    whole, and ``validate`` says so."""
    data = plain + struct.pack("<IIII", 0, 0, 1000, 1000) + bytes(10)
    path = tmp_path / "tail.pcap"
    path.write_bytes(data)
    r = run("validate", path)
    assert r.returncode == 0, r.stderr
