"""x-ignore-shared (real captures: samples/x86-ignore-shared with QEMU 7.2,
x86-qemu10-ignore-shared with QEMU 10.0.2): MEM_SIZE carries each block's address; the
shared pc.ram sends no page and extract says so."""

import json
import subprocess
import sys

import pytest

from migstream.tools.devices import device_states
from migstream.tools.extract import extract
from support.samples import sample_by_name

BOTH = pytest.mark.parametrize("name", ["x86-ignore-shared", "x86-qemu10-ignore-shared"])


@BOTH
def test_info_shows_block_addresses(raw_sample_dir, name):
    path = raw_sample_dir / f"{name}.mig"
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "info", "--json", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["capabilities"] == ["x-ignore-shared"]
    addrs = {b["name"]: b["addr"] for b in doc["ram_blocks"]}
    sample = sample_by_name(name)
    bios_truth = next(t for t in sample["truth"] if t["block"] == "pc.bios")
    assert addrs["pc.bios"] == bios_truth["gpa"]  # where pmemsave found the BIOS: 4 GiB - 256 KiB
    assert addrs["pc.rom"] == 0xC0000  # the PC option-ROM window
    assert addrs["pc.ram"] == 0
    assert {b["name"] for b in doc["ram_blocks"]} == {b["name"] for b in sample["ram_blocks"]}
    assert "pc.ram" not in doc["pages_by_block"]
    text = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "info", str(path)], capture_output=True, text=True
    ).stdout
    assert "addr 0xfffc0000" in text


@BOTH
def test_extract_marks_shared_block_absent(raw_sample_dir, tmp_path, name):
    result = extract(str(raw_sample_dir / f"{name}.mig"), str(tmp_path))
    assert result.error is None
    blocks = {b["name"]: b for b in result.manifest["blocks"]}
    assert blocks["pc.ram"].get("absent") is True and blocks["pc.ram"].get("ignored_shared") is True
    assert not any(b.get("absent") for n, b in blocks.items() if n != "pc.ram")
    assert blocks["pc.bios"]["addr"] == 0xFFFC0000
    assert any("pc.ram" in m and "x-ignore-shared" in m for _, m in result.warnings)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["blocks"] == result.manifest["blocks"]


def test_cli_warns(raw_sample_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "migstream.cli",
            "extract",
            str(raw_sample_dir / "x86-ignore-shared.mig"),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "pc.ram" in proc.stderr and "shared" in proc.stderr


def test_normal_stream_has_no_absent_block(raw_sample_dir, tmp_path):
    result = extract(str(raw_sample_dir / "x86-stopped.mig"), str(tmp_path))
    assert not any(b.get("absent") for b in result.manifest["blocks"])
    assert not any("addr" in b for b in result.manifest["blocks"])


def test_incomplete_stream_claims_nothing(raw_sample_dir, tmp_path):
    """Cut before the pages of later blocks: absence is only reported for complete streams."""
    data = (raw_sample_dir / "x86-ignore-shared.mig").read_bytes()
    cut = tmp_path / "cut.mig"
    cut.write_bytes(data[:4096])
    result = extract(str(cut), str(tmp_path / "out"))
    assert not any(b.get("absent") for b in result.manifest["blocks"])


@BOTH
def test_devices_where_analyze_migration_fails(raw_sample_dir, name):
    """analyze-migration.py 7.2 stops at the configuration's capabilities subsection."""
    doc = device_states(str(raw_sample_dir / f"{name}.mig"))
    assert doc["configuration"]["capabilities"] == ["x-ignore-shared"]
    assert not [s for s in doc["sections"] if s.get("error")]
    cpu = next(s for s in doc["sections"] if s["idstr"] == "cpu")["state"]
    assert 0x7C00 <= cpu["env.eip"] < 0x9000
