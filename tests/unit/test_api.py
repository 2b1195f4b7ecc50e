"""The Python API (migstream/api.py, docs/api.md): the documented examples run on real
samples and give the RAM ``migstream extract`` writes; ``__version__`` is the installed
distribution's; ``import migstream`` stays light; ``--version``."""

import contextlib
import hashlib
import importlib.metadata
import io
import json
import re
import shutil
import subprocess
import sys

import pytest

import migstream
from migstream import StreamError
from migstream import UsageError
from support.samples import ROOT
from support.samples import SAMPLES
from support.samples import read_zst

API_DOC = ROOT / "docs" / "api.md"
MULTIFD = SAMPLES / "x86-multifd-zstd.mig.zst"
MULTIFD_CHANNELS = [SAMPLES / "x86-multifd-zstd.ch0.zst", SAMPLES / "x86-multifd-zstd.ch1.zst"]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def extracted(tmp_path, stream, *extra) -> dict[str, bytes]:
    """Block name -> content of the files ``migstream extract`` writes."""
    out = tmp_path / "extract"
    r = cli("extract", stream, "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    return {b["name"]: (out / b["file"]).read_bytes() for b in manifest["blocks"]}


def test_documented_examples_run_and_give_extracts_ram(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile("\n".join(blocks), str(API_DOC), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == importlib.metadata.version("migstream")
    assert "pc-i440fx-7.2 4096 True" in lines
    assert any(re.fullmatch(r"first XBZRLE page at offset 0x[0-9a-f]+, block pc.ram", line) for line in lines)
    assert lines[-1] == "fault at offset 8: error at offset 0x8: Unknown savevm section type 127"
    # The multifd example prints "name length sha256" per block: what extract writes.
    want = extracted(tmp_path, MULTIFD, *(a for c in MULTIFD_CHANNELS for a in ("--channel", c)))
    got = {m[1]: (int(m[2]), m[3]) for m in (re.fullmatch(r"(\S+) (\d+) ([0-9a-f]{64})", x) for x in lines) if m}
    assert got == {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in want.items()}
    assert len(want["pc.ram"]) == 32 << 20


def test_version_is_the_installed_distributions():
    assert migstream.__version__ == importlib.metadata.version("migstream")


@pytest.mark.parametrize("name", ["libvirt-gzip.img", "x86-compress.mig.zst"])
def test_ram_equals_extract(tmp_path, name):
    want = extracted(tmp_path, SAMPLES / name)
    with migstream.open(SAMPLES / name) as cap:
        ram = cap.ram()
        assert set(ram) == set(want)
        for block, data in want.items():
            assert memoryview(ram[block]) == data, block
        assert cap.manifest is not None and cap.manifest["complete"]
        assert cap.ram() is ram  # decoded once
    with pytest.raises(ValueError):  # closed with the capture
        ram["pc.bios"][0]


def test_packet_capture_brings_its_channels(tmp_path):
    pcap = tmp_path / "multifd.pcap"
    pcap.write_bytes(read_zst(SAMPLES / "pcap-multifd.pcap.zst"))
    want = extracted(tmp_path, pcap)
    with migstream.open(pcap) as cap:
        doc = cap.info()
        assert doc["ram_complete"] and doc["multifd_channels"]
        assert {name: bytes(ram) for name, ram in cap.ram().items()} == want


def test_capture_directory_brings_its_channels(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(MULTIFD, rec / "main.mig.zst")
    channels = [{"index": 0, "kind": "main", "file": "main.mig.zst"}]
    for i, ch in enumerate(MULTIFD_CHANNELS, 1):
        shutil.copy(ch, rec / ch.name)
        channels.append({"index": i, "kind": "multifd", "file": ch.name})
    (rec / "capture.json").write_text(json.dumps({"channels": channels}))
    with migstream.open(MULTIFD, channels=MULTIFD_CHANNELS) as by_hand, migstream.open(rec) as cap:
        doc = cap.info()
        assert doc["ram_complete"] and len(doc["multifd_channels"]) == 2
        assert doc == {**by_hand.info(), "multifd_channels": doc["multifd_channels"]}
        assert memoryview(cap.ram()["pc.ram"]) == memoryview(by_hand.ram()["pc.ram"])
        assert sum(type(e).__name__ == "MultifdPacket" for e in cap.events()) == 24


def test_info_is_info_json():
    r = cli("info", "--json", "samples/x86-xbzrle.mig.zst")
    assert r.returncode == 0, r.stderr
    with migstream.open(SAMPLES / "x86-xbzrle.mig.zst") as cap:
        assert cap.info() == json.loads(r.stdout)


def test_events_carry_offsets_and_faults_raise(tmp_path):
    data = (SAMPLES / "x86-xbzrle.mig.zst").read_bytes()
    with migstream.open(SAMPLES / "x86-xbzrle.mig.zst") as cap:
        offsets = [e.offset for e in cap.events()]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    cut = tmp_path / "cut.mig.zst"
    cut.write_bytes(data[: len(data) // 2])
    seen = []
    with migstream.open(cut) as cap, pytest.raises(StreamError) as exc:
        for event in cap.events():
            seen.append(event)
    assert seen and exc.value.offset >= seen[-1].offset  # the events before the fault came first


def test_open_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot open"):
        migstream.open(tmp_path / "missing.mig")
    with pytest.raises(UsageError, match="qcow2 images only"):
        migstream.open(SAMPLES / "x86-xbzrle.mig.zst", snapshot="s1")
    bad = tmp_path / "bad.mig"
    bad.write_bytes(b"QEVM\x00\x00\x00\x03\x7f")
    with migstream.open(bad) as cap:
        error = cap.info()["error"]
        assert (error["error"], error["offset"]) == ("error at offset 0x8: Unknown savevm section type 127", 8)
        with pytest.raises(StreamError) as exc:
            cap.ram()
        assert exc.value.offset == 8


def test_import_is_light():
    code = (
        "import sys, migstream\n"
        "heavy = ('migstream.api', 'migstream.tools.summary', 'numpy', 'textual', 'typer', 'zstandard')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "migstream.open\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == ["[]", "['migstream.api', 'migstream.tools.summary']"]


def test_version_option():
    from migstream.wire.fastpath import COMPILED

    r = cli("--version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"migstream {importlib.metadata.version('migstream')}"
    assert lines[1].startswith("record walk  compiled" if COMPILED else "record walk  pure Python")
    assert lines[2] == f"zstandard    {importlib.metadata.version('zstandard')}"
    # Cheap: the heavy layers are not imported for it.
    code = (
        "import sys\nfrom migstream.cli import main\nsys.argv = ['migstream', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'textual', 'zstandard', 'migstream.tools.extract') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines()[-1] == "[]"
