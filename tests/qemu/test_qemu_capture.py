"""Real QEMU 7.2 migrations through `migstream tap` and into `migstream capture`.

Source QEMU -> tap -> destination QEMU on loopback unix sockets, with the test
guest (samples/guest/guest.asm) dirtying memory.  Each test checks that the
migration completes, that the destination VM runs on (its serial port keeps
printing ticks) and that the recording decodes byte-exact against guest memory:
the destination's pmemsave taken paused right after the migration (what the
migration delivered), or the stopped source's for postcopy and capture.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from migstream.capture.sessions import CaptureSession
from migstream.capture.sessions import TapSession
from migstream.containers.capturedir import resolve_capture
from migstream.containers.multifd import with_channels
from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.decode.returnpath import return_path_messages
from migstream.tools.extract import extract
from migstream.tools.summary import StreamSummary
from support.qemu import QEMU_X86
from support.qemu import X86_EXCLUDE
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import build_guest
from support.qemu import differing_pages
from support.qemu import guest_args
from support.qemu import require_qemu

RAM = 64 * MiB
RUNNING = {"max-bandwidth": 32 * MiB, "downtime-limit": 30}


@pytest.fixture(scope="module")
def guest_img():
    require_qemu()
    d = Path(tempfile.mkdtemp(prefix="migstream-guest-"))
    yield build_guest(d)
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
def work():
    # Unix socket paths must stay short (108 bytes): not pytest's tmp_path.
    d = Path(tempfile.mkdtemp(prefix="mgs-"))
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def decoded_ram(capture_dir: Path, out: Path) -> bytes:
    result = extract(str(capture_dir), str(out))
    assert result.error is None, result.error
    assert result.manifest["complete"]
    block = next(b for b in result.manifest["blocks"] if b["name"] == "pc.ram")
    data = (out / block["file"]).read_bytes()
    assert len(data) == RAM
    return data


def summary(path: str, channels: bool = True) -> dict:
    """What `info` counts; a capture directory with its multifd channels unless told not."""
    with StreamSource(path) as src:
        dec = open_decoder(src)
        s = StreamSummary()
        for ev in with_channels(iter_events(src, dec), src.channel_paths if channels else (), dec):
            s.add(ev)
        return s.as_dict()


def assert_keeps_running(dst: Vm) -> None:
    """The destination guest goes on: two new tick lines after the migration."""
    start = len(dst.serial_text())
    first = dst.wait_serial("migstream guest tick", timeout=20, after=start)
    dst.wait_serial("migstream guest tick", timeout=20, after=first)
    assert dst.status() == "running"


def start_pair(
    work: Path,
    guest_img: Path,
    caps: tuple[str, ...],
    params: dict,
    *,
    dst_paused: bool,
    dst_params: dict | None = None,
):
    src = Vm(QEMU_X86, guest_args(guest_img), work, "src")
    try:
        dst = Vm(QEMU_X86, guest_args(guest_img) + (["-S"] if dst_paused else []) + ["-incoming", "defer"], work, "dst")
    except BaseException:
        src.close()
        raise
    try:
        for vm in (src, dst):
            vm.caps(*caps)
        if params:
            src.cmd("migrate-set-parameters", **params)
        if dst_params:
            dst.cmd("migrate-set-parameters", **dst_params)
        dst.cmd("migrate-incoming", uri=f"unix:{work / 'dst.sock'}")
        src.wait_serial("migstream guest ready")
        time.sleep(0.5)
    except BaseException:
        src.close()
        dst.close()
        raise
    return src, dst


def run_through_tap(
    work: Path,
    guest_img: Path,
    caps=(),
    params=None,
    *,
    dst_paused=True,
    dst_params=None,
    postcopy_after=None,
    min_syncs=None,
):
    """Migrate src -> tap -> dst; returns (src, dst, manifest, capture dir, query-migrate)."""
    src, dst = start_pair(
        work, guest_img, caps, dict(RUNNING, **(params or {})), dst_paused=dst_paused, dst_params=dst_params
    )
    rec = work / "rec"
    try:
        with TapSession(f"unix:{work / 'tap.sock'}", f"unix:{work / 'dst.sock'}", str(rec)) as tap:
            src.cmd("migrate", uri=tap.uri)
            st = src.wait_migration(postcopy_after=postcopy_after, min_syncs=min_syncs)
            assert tap.wait(20), "channels still open after the migration"
        manifest = json.loads((rec / "capture.json").read_text())
    except BaseException:
        src.close()
        dst.close()
        raise
    return src, dst, manifest, rec, st


def check_destination_truth(dst: Vm, rec: Path, work: Path) -> None:
    """Recording == what the paused destination received; then it runs on."""
    deadline = time.monotonic() + 20
    while dst.cmd("query-migrate").get("status") != "completed":
        assert time.monotonic() < deadline, dst.cmd("query-migrate")
        time.sleep(0.05)
    assert dst.status() == "paused"
    truth = dst.pmemsave(0, RAM, work / "dst.ram")
    assert differing_pages(decoded_ram(rec, work / "x"), truth, X86_EXCLUDE) == []
    dst.cmd("cont")
    assert_keeps_running(dst)


def check_tap_manifest(manifest: dict, rec: Path, kinds: list[str]) -> None:
    assert [c["kind"] for c in manifest["channels"]] == kinds
    assert manifest["complete"] is True
    for c in manifest["channels"]:
        assert c["recording"] == "complete" and "error" not in c
        assert (rec / c["file"]).stat().st_size == c["bytes"] > 0


def test_tap_precopy(work, guest_img):
    src, dst, manifest, rec, _ = run_through_tap(work, guest_img)
    with src, dst:
        check_tap_manifest(manifest, rec, ["main"])
        s = summary(str(rec))  # the directory opens as its main channel
        assert s["eof"] and s["machine"] == "pc-i440fx-7.2" and s["ram_iterations"] >= 2
        check_destination_truth(dst, rec, work)


def test_tap_xbzrle(work, guest_img):
    # XBZRLE starts with the third iteration (a page is cached when sent again, and
    # sent as a delta the time after): hold the migration for 4 syncs whatever the load.
    src, dst, manifest, rec, st = run_through_tap(
        work, guest_img, ("xbzrle",), {"xbzrle-cache-size": 8 * MiB, "downtime-limit": 1}, min_syncs=4
    )
    with src, dst:
        assert st["ram"]["dirty-sync-count"] >= 4
        check_tap_manifest(manifest, rec, ["main"])
        s = summary(str(rec))
        assert s["records"]["xbzrle"]["count"] > 0, s["records"]
        check_destination_truth(dst, rec, work)


def test_tap_multifd(work, guest_img):
    two = {"multifd-channels": 2}
    src, dst, manifest, rec, _ = run_through_tap(work, guest_img, ("multifd",), two, dst_params=two)
    with src, dst:
        check_tap_manifest(manifest, rec, ["main", "multifd", "multifd"])
        assert_multifd_channels(rec, manifest)
        s = summary(str(rec), channels=False)
        assert s["eof"] and "page" not in s["records"]  # pages travel on the multifd channels
        # The directory brings its channel files: decoded, they are what dst received.
        assert summary(str(rec))["records"]["multifd_page"]["count"] > 2000
        check_destination_truth(dst, rec, work)


def assert_multifd_channels(rec: Path, manifest: dict) -> None:
    """Each multifd file is a real channel: MultiFDInit_t (magic, version 1, its id),
    then packets that start with the magic again (multifd.c)."""
    main, channels = resolve_capture(str(rec))
    assert main == str(rec / "ch0-main.mig") and len(channels) == 2
    ids = set()
    for path in channels:
        data = Path(path).read_bytes()
        magic, version = struct.unpack_from(">II", data, 0)
        assert (magic, version) == (0x11223344, 1)
        ids.add(data[24])
        magic, version, _flags, pages_alloc = struct.unpack_from(">IIII", data, 64)
        assert (magic, version, pages_alloc) == (0x11223344, 1, 128)
    assert ids == {0, 1}


def test_tap_postcopy(work, guest_img):
    # The destination runs during postcopy, so its page faults travel back to the
    # source as page requests on the return path, through the tap.  A downtime limit
    # of 1 ms keeps precopy from finishing before postcopy starts, whatever the load.
    src, dst, manifest, rec, st = run_through_tap(
        work,
        guest_img,
        ("postcopy-ram",),
        {"max-bandwidth": 8 * MiB, "max-postcopy-bandwidth": 4 * MiB, "downtime-limit": 1},
        dst_paused=False,
        postcopy_after=0.5,
    )
    with src, dst:
        check_tap_manifest(manifest, rec, ["main"])
        main = manifest["channels"][0]
        assert main["return_bytes"] > 0 and (rec / main["return_file"]).stat().st_size == main["return_bytes"]
        # The running destination asked for pages it faulted on; it ended with SHUT(0).
        messages = list(return_path_messages((rec / main["return_file"]).read_bytes()))
        names = [name for _, name, _ in messages]
        assert "REQ_PAGES_ID" in names and "PONG" in names, names
        assert messages[-1][1:] == ("SHUT", {"value": 0})
        assert st["status"] == "completed"
        s = summary(str(rec))
        assert s["commands"].get("POSTCOPY_RUN") == 1 and s["commands"].get("PACKAGED") == 1, s["commands"]
        # The source stopped at the switch to postcopy: its memory is what was sent.
        assert src.status() == "postmigrate"
        truth = src.pmemsave(0, RAM, work / "src.ram")
        assert differing_pages(decoded_ram(rec, work / "x"), truth, X86_EXCLUDE) == []
        assert_keeps_running(dst)


def capture_from_stopped_source(work: Path, guest_img: Path, caps=(), params=None):
    src = Vm(QEMU_X86, guest_args(guest_img), work, "src")
    try:
        src.wait_serial("migstream guest ready")
        time.sleep(0.3)
        src.cmd("stop")
        src.caps(*caps)
        if params:
            src.cmd("migrate-set-parameters", **params)
        rec = work / "rec"
        with CaptureSession(f"unix:{work / 'cap.sock'}", str(rec)) as cap:
            src.cmd("migrate", uri=cap.uri)
            src.wait_migration()
            assert cap.wait(20)
        truth = src.pmemsave(0, RAM, work / "src.ram")
        return src, rec, json.loads((rec / "capture.json").read_text()), truth
    except BaseException:
        src.close()
        raise


def test_capture_plain(work, guest_img):
    src, rec, manifest, truth = capture_from_stopped_source(work, guest_img)
    with src:
        check_tap_manifest(manifest, rec, ["main"])
        assert "return_bytes" not in manifest["channels"][0]
        assert differing_pages(decoded_ram(rec, work / "x"), truth, X86_EXCLUDE) == []


def test_capture_multifd(work, guest_img):
    src, rec, manifest, truth = capture_from_stopped_source(work, guest_img, ("multifd",), {"multifd-channels": 2})
    with src:
        check_tap_manifest(manifest, rec, ["main", "multifd", "multifd"])
        assert_multifd_channels(rec, manifest)
        assert differing_pages(decoded_ram(rec, work / "x"), truth, X86_EXCLUDE) == []


def test_cli_tap_live(work, guest_img):
    """The command: tap --live --json ends by itself when the migration is over."""
    src, dst = start_pair(work, guest_img, (), dict(RUNNING), dst_paused=True)
    with src, dst:
        rec = work / "rec"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from migstream.cli import main; main()",
                "tap",
                "--listen",
                f"unix:{work / 'tap.sock'}",
                "--forward",
                f"unix:{work / 'dst.sock'}",
                "-o",
                str(rec),
                "--live",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 10
            while not (work / "tap.sock").exists():
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
            src.cmd("migrate", uri=f"unix:{work / 'tap.sock'}")
            src.wait_migration()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        doc = json.loads(out)
        assert doc["complete"] and [c["kind"] for c in doc["channels"]] == ["main"]
        assert doc["live"]["eof"] and doc["live"]["error"] is None
        # The live decode saw the same records as a decode of the finished file.
        assert doc["live"]["records"] == {k: v["count"] for k, v in summary(str(rec))["records"].items()}
        assert doc["live"]["ram_iterations"] >= 2
        check_destination_truth(dst, rec, work)


def test_tap_postcopy_preempt(work, guest_img):
    """postcopy-preempt opens a second channel without magic (QEMU 7.2): the tap
    forwards it in order, identifies it, and its first bytes are a RAM page record
    naming its block (ram.c save_page_header on the preempt channel)."""
    src, dst, manifest, rec, _ = run_through_tap(
        work,
        guest_img,
        ("postcopy-ram", "postcopy-preempt"),
        {"max-bandwidth": 8 * MiB, "max-postcopy-bandwidth": 4 * MiB},
        dst_paused=False,
        postcopy_after=0.5,
    )
    with src, dst:
        check_tap_manifest(manifest, rec, ["main", "postcopy-preempt"])
        data = (rec / manifest["channels"][1]["file"]).read_bytes()
        (addr_flags,) = struct.unpack_from(">Q", data)
        assert addr_flags & 0xFFF == 0x08  # PAGE, no CONTINUE: the block name follows
        name = data[9 : 9 + data[8]].decode()
        assert name in {"pc.ram", "pc.bios", "pc.rom"} or name.startswith("/rom@"), name
        assert resolve_capture(str(rec))[1] == []  # not a multifd channel
        assert_keeps_running(dst)
