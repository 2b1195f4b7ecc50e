"""capture / tap without QEMU: fake peers on unix sockets, exact bytes both ways,
what happens when the disk cannot keep up, capture directories as streams."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from migstream.capture.endpoints import identify_channel
from migstream.capture.endpoints import parse_uri
from migstream.capture.sessions import CaptureSession
from migstream.capture.sessions import TapSession
from migstream.containers.capturedir import MAIN
from migstream.containers.capturedir import MULTIFD
from migstream.containers.capturedir import POSTCOPY_PREEMPT
from migstream.containers.capturedir import resolve_capture
from migstream.decode.returnpath import return_path_messages
from migstream.errors import StreamError
from migstream.errors import UsageError
from support.qemu import X86_EXCLUDE
from support.qemu import differing_pages
from support.samples import SAMPLES
from support.samples import read_zst

MULTIFD_HEAD = struct.pack(">II", 0x11223344, 1)


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="mgs-"))  # short: unix socket paths
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


class FakeDestination:
    """Accepts n connections; records what each sends; answers `reply` on each, then closes."""

    def __init__(self, path: Path, n: int, reply: bytes) -> None:
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(path))
        self.srv.listen(8)
        self.received: dict[int, bytes] = {}
        self.threads = []
        self.reply = reply
        self.acceptor = threading.Thread(target=self._accept, args=(n,), daemon=True)
        self.acceptor.start()

    def _accept(self, n):
        for i in range(n):
            conn, _ = self.srv.accept()
            t = threading.Thread(target=self._serve, args=(i, conn), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, i, conn):
        data = bytearray()
        while chunk := conn.recv(1 << 20):
            data += chunk
        self.received[i] = bytes(data)
        conn.sendall(self.reply)
        conn.close()

    def join(self):
        self.acceptor.join(10)
        for t in self.threads:
            t.join(10)
        self.srv.close()


def send_and_collect(address: str, payloads: list[bytes]) -> list[bytes]:
    """Open one connection per payload (in order), send, half-close, read the reply."""
    socks = []
    for _ in payloads:
        s = socket.socket(socket.AF_UNIX)
        s.connect(address)
        socks.append(s)
    replies: list[bytes] = [b""] * len(payloads)

    def run(i):
        socks[i].sendall(payloads[i])
        socks[i].shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := socks[i].recv(65536):
            got += chunk
        replies[i] = bytes(got)
        socks[i].close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return replies


def test_parse_uri():
    assert parse_uri("unix:/tmp/x.sock").address == "/tmp/x.sock"
    assert parse_uri("tcp:127.0.0.1:4444").address == ("127.0.0.1", 4444)
    assert parse_uri("tcp::4444").address == ("127.0.0.1", 4444)  # loopback, not all interfaces
    assert parse_uri("tcp:4444").address == ("127.0.0.1", 4444)
    assert parse_uri("tcp:[::1]:5").address == ("::1", 5)
    for bad in ("exec:cat", "tcp:host:port", "unix:", "tcp:1.2.3.4:70000", "nothing"):
        with pytest.raises(UsageError):
            parse_uri(bad)


def test_identify_channel():
    assert identify_channel(b"QEVM", main_seen=False) == MAIN
    assert identify_channel(MULTIFD_HEAD[:4], main_seen=True) == MULTIFD
    # QEMU 7.2's preempt channel starts with a RAM page header, no magic.
    assert identify_channel(b"\0\0\0\0", main_seen=True) == POSTCOPY_PREEMPT
    assert identify_channel(b"\0\0\0\0", main_seen=False) == "unknown"
    assert identify_channel(b"", main_seen=True) == "empty"


def test_tap_forwards_and_records_both_directions(work):
    dest = FakeDestination(work / "dst.sock", 2, reply=struct.pack(">HHI", 2, 4, 7) + struct.pack(">HHI", 1, 4, 0))
    main = b"QEVM" + os.urandom(8 << 20)
    multifd = MULTIFD_HEAD + os.urandom(3 << 20)
    with TapSession(f"unix:{work / 'tap.sock'}", f"unix:{work / 'dst.sock'}", str(work / "rec")) as tap:
        replies = send_and_collect(str(work / "tap.sock"), [main, multifd])
        assert tap.wait(10)
    dest.join()
    assert dest.received == {0: main, 1: multifd}  # in the source's order
    assert replies[0] == replies[1] == dest.reply
    doc = json.loads((work / "rec" / "capture.json").read_text())
    assert doc["complete"] and doc["main"] == "ch0-main.mig"
    chans = doc["channels"]
    assert [(c["kind"], c["order"], c["bytes"]) for c in chans] == [(MAIN, 0, len(main)), (MULTIFD, 1, len(multifd))]
    assert (work / "rec" / chans[0]["file"]).read_bytes() == main
    assert (work / "rec" / chans[1]["file"]).read_bytes() == multifd
    rp = (work / "rec" / chans[0]["return_file"]).read_bytes()
    assert rp == dest.reply
    assert [(n, f) for _, n, f in return_path_messages(rp)] == [("PONG", {"value": 7}), ("SHUT", {"value": 0})]
    assert all(c["start"] <= c["end"] for c in chans)


def test_tap_slow_disk_stops_recording_not_forwarding(work):
    """The recording file is a FIFO nobody reads: the writer blocks like a dead disk.
    Forwarding finishes anyway; the recording stops at the backlog limit and keeps a
    valid prefix."""
    rec = work / "rec"
    rec.mkdir()
    os.mkfifo(rec / "ch0-main.mig")
    dest = FakeDestination(work / "dst.sock", 1, reply=b"")
    main = b"QEVM" + os.urandom(24 << 20)
    tap = TapSession(f"unix:{work / 'tap.sock'}", f"unix:{work / 'dst.sock'}", str(rec), max_backlog=4 << 20)
    tap.start()
    prefix = bytearray()
    try:
        send_and_collect(str(work / "tap.sock"), [main])
        assert tap.wait(10), "forwarding stalled behind the recording"
        dest.join()
        assert dest.received[0] == main
        # Now let the stalled writer go, and read what it had queued.
        fd = os.open(rec / "ch0-main.mig", os.O_RDONLY)
        reader = threading.Thread(target=lambda: prefix.extend(_read_all(fd)), daemon=True)
        reader.start()
    finally:
        doc = tap.stop()
    reader.join(10)
    ch = doc["channels"][0]
    assert ch["bytes"] == len(main)
    assert ch["recording"] == "stopped" and "behind" in ch["recording_stopped"]["reason"]
    assert 0 < ch["recording_stopped"]["offset"] <= 4 << 20
    assert bytes(prefix) == main[: ch["recording_stopped"]["offset"]] and ch["recorded_bytes"] == len(prefix)
    assert doc["complete"] is False and any("recording stopped" in w for w in doc["warnings"])


def _read_all(fd):
    out = bytearray()
    while chunk := os.read(fd, 1 << 20):
        out += chunk
    os.close(fd)
    return out


def test_tap_disk_full_keeps_forwarding(work):
    rec = work / "rec"
    rec.mkdir()
    os.symlink("/dev/full", rec / "ch0-main.mig")  # every write fails with ENOSPC
    dest = FakeDestination(work / "dst.sock", 1, reply=b"ok")
    main = b"QEVM" + os.urandom(4 << 20)
    with TapSession(f"unix:{work / 'tap.sock'}", f"unix:{work / 'dst.sock'}", str(rec)) as tap:
        assert send_and_collect(str(work / "tap.sock"), [main]) == [b"ok"]
        assert tap.wait(10)
    dest.join()
    assert dest.received[0] == main
    doc = json.loads((rec / "capture.json").read_text())
    ch = doc["channels"][0]
    assert ch["recording"] == "stopped" and "write error" in ch["recording_stopped"]["reason"]
    assert ch["recording_stopped"]["offset"] == 0


def test_capture_records_every_channel(work):
    stream = read_zst(SAMPLES / "x86-stopped.mig.zst")
    multifd = MULTIFD_HEAD + bytes(1000)
    with CaptureSession(f"unix:{work / 'cap.sock'}", str(work / "rec")) as cap:
        send_and_collect(str(work / "cap.sock"), [stream, multifd, multifd])
        assert cap.wait(10)
    main, channels = resolve_capture(str(work / "rec"))
    assert Path(main).read_bytes() == stream
    assert [Path(p).read_bytes() for p in channels] == [multifd, multifd]
    doc = json.loads((work / "rec" / "capture.json").read_text())
    assert [c["kind"] for c in doc["channels"]] == [MAIN, MULTIFD, MULTIFD]
    assert "return_bytes" not in doc["channels"][0]


def test_capture_dir_opens_with_info_and_extract(work):
    """`info`/`extract` take the directory and decode its main channel."""
    stream = read_zst(SAMPLES / "x86-stopped.mig.zst")
    with CaptureSession(f"unix:{work / 'cap.sock'}", str(work / "rec")) as cap:
        send_and_collect(str(work / "cap.sock"), [stream])
        assert cap.wait(10)
    (work / "plain.mig").write_bytes(stream)
    cli = [sys.executable, "-c", "from migstream.cli import main; main()"]
    via_dir = subprocess.run(cli + ["info", "--json", str(work / "rec")], capture_output=True, text=True)
    via_file = subprocess.run(cli + ["info", "--json", str(work / "plain.mig")], capture_output=True, text=True)
    assert via_dir.returncode == 0, via_dir.stderr
    assert json.loads(via_dir.stdout) == json.loads(via_file.stdout)
    r = subprocess.run(cli + ["extract", str(work / "rec"), "-o", str(work / "x")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    truth = read_zst(SAMPLES / "x86-stopped.ram.zst")
    ram = (work / "x" / json.loads((work / "x" / "manifest.json").read_text())["blocks"][0]["file"]).read_bytes()
    assert differing_pages(ram[: len(truth)], truth, X86_EXCLUDE) == []


def test_capture_dir_errors(work):
    (work / "empty").mkdir()
    cli = [sys.executable, "-c", "from migstream.cli import main; main()"]
    r = subprocess.run(cli + ["info", str(work / "empty")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a capture" in r.stderr and "Traceback" not in r.stderr
    (work / "bad").mkdir()
    (work / "bad" / "capture.json").write_text('{"channels": [{"kind": "multifd", "file": "x"}]}')
    r = subprocess.run(cli + ["info", str(work / "bad")], capture_output=True, text=True)
    assert r.returncode == 2 and "no main channel" in r.stderr


def test_listen_refuses_a_live_socket(work):
    path = work / "busy.sock"
    with CaptureSession(f"unix:{path}", str(work / "a")):
        with pytest.raises(UsageError, match="listening"):
            CaptureSession(f"unix:{path}", str(work / "b"))


def test_return_path_truncated():
    with pytest.raises(StreamError) as exc:
        list(return_path_messages(struct.pack(">HHI", 2, 4, 1) + b"\x00\x04"))
    assert exc.value.offset == 8


def test_capture_over_tcp_loopback(work):
    stream = b"QEVM" + os.urandom(1 << 20)
    with CaptureSession("tcp:127.0.0.1:0", str(work / "rec")) as cap:
        assert cap.uri.startswith("tcp:127.0.0.1:") and not cap.uri.endswith(":0")
        s = socket.create_connection(cap.listen_endpoint.address)
        s.sendall(stream)
        s.close()
        assert cap.wait(10)
    main, channels = resolve_capture(str(work / "rec"))
    assert Path(main).read_bytes() == stream and channels == []


def test_cli_capture_ends_with_the_migration(work):
    stream = read_zst(SAMPLES / "x86-stopped.mig.zst")
    sock = work / "cap.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from migstream.cli import main; main()",
            "capture",
            "--listen",
            f"unix:{sock}",
            "-o",
            str(work / "rec"),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        send_and_collect(str(sock), [stream, MULTIFD_HEAD + bytes(64)])
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["complete"] and [(c["kind"], c["bytes"]) for c in doc["channels"]] == [
        (MAIN, len(stream)),
        (MULTIFD, 72),
    ]
    assert "listening on unix:" in err and not sock.exists()


@pytest.mark.parametrize("where", ["/var/tmp", "/dev/shm"])  # O_DIRECT (ext4) and its fallback (tmpfs)
def test_recording_file_keeps_every_byte(where):
    from migstream.capture.recording import RecordingFile

    if not os.path.isdir(where):
        pytest.skip(f"no {where}")
    fd, path = tempfile.mkstemp(prefix="mgs-rec-", dir=where)
    os.close(fd)
    try:
        data = bytearray(os.urandom(RecordingFile.STAGE * 2 + 12345))
        base = ctypes.addressof(ctypes.c_char.from_buffer(data))
        f = RecordingFile(path)
        pos = 0
        for i, size in enumerate([1, 4095, 4096, 5000, 1 << 20, RecordingFile.STAGE + 3] * 4):
            piece = memoryview(data)[pos : pos + size]
            # Both copy paths: from a known address (GIL released) and from the view.
            f.append(piece, base + pos if i % 2 else None)
            pos += len(piece)
            if i % 3 == 0:
                f.flush()  # what the writer does when its queue runs empty
                assert f.written <= pos and (not f.direct or f.written % 4096 == 0)
        f.append(memoryview(data)[pos:])
        f.close()
        assert f.written == len(data)
        assert Path(path).read_bytes() == data
    finally:
        os.unlink(path)


def test_tap_passes_a_reset_on(work):
    """The destination hangs up mid-stream: the tap closes the source side too (as a
    direct connection would), notes the reset, and the recording keeps what came."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(work / "dst.sock"))
    srv.listen(1)

    def rude():
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.close()  # unread data in flight -> the tap's writes fail

    t = threading.Thread(target=rude, daemon=True)
    t.start()
    with TapSession(f"unix:{work / 'tap.sock'}", f"unix:{work / 'dst.sock'}", str(work / "rec")) as tap:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(work / "tap.sock"))
        with pytest.raises(OSError):
            for _ in range(64):
                s.sendall(b"QEVM" + bytes(1 << 20))
        s.close()
        assert tap.wait(10)
    t.join(5)
    srv.close()
    ch = json.loads((work / "rec" / "capture.json").read_text())["channels"][0]
    assert ch["resets"] and "error" not in ch
    assert ch["recorded_bytes"] == ch["bytes"] > 0
