"""`migstream diff`: configuration, blocks and differing pages of two saves.

Expected page sets come from outside the code under test: patches we make
ourselves, or a plain construct decode of the stream (tests/support/reference.py)
applied to bytearrays."""

import json
import shutil
import subprocess
import sys

import pytest

from migstream.tools.diff import diff
from migstream.tools.extract import extract
from migstream.wire import grammar as g
from support.reference import reference_records
from support.samples import SAMPLES
from support.samples import raw_stream
from support.samples import sample_by_name

PS = 4096
RUNNING = "x86-running"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def running(raw_sample_dir, tmp_path_factory):
    stream = raw_sample_dir / (RUNNING + ".mig")
    out = tmp_path_factory.mktemp("x") / "extract"
    assert extract(str(stream), str(out)).error is None
    return stream, out


def memory_after(data: bytes, iterations: int):
    """Block contents after ``iterations`` RAM PART sections, by the reference decoder."""
    mem, parts = {}, 0
    for item in reference_records(data):
        if item[0] == "mem_size":
            for name, length in item[2]:
                mem[name] = bytearray(length)
        elif item[0] == "section":
            if item[2] in (g.SectionType.PART, g.SectionType.END) and parts == iterations:
                break
            parts += item[2] == g.SectionType.PART
        elif isinstance(item[0], int):
            _, flags, block, addr, value = item
            kind = flags & ~g.RamFlag.CONTINUE
            assert kind in (g.RamFlag.PAGE, g.RamFlag.ZERO), "plain sample expected"
            mem[block][addr : addr + PS] = value if kind == g.RamFlag.PAGE else bytes([value]) * PS
    return mem


def test_stream_equals_its_own_extract(running):
    stream, out = running
    r = cli("diff", str(stream), str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "equal" in r.stdout


def test_patched_pages_are_reported_as_ranges(running, tmp_path):
    stream, out = running
    copy = tmp_path / "patched"
    shutil.copytree(out, copy)
    with open(copy / "pc.ram.bin", "r+b") as f:
        for page in (5, 100, 101, 102):  # one lone page, one stretch of three
            f.seek(page * PS + 17)
            b = f.read(1)
            f.seek(page * PS + 17)
            f.write(bytes([b[0] ^ 0xFF]))
    r = cli("diff", str(stream), str(copy), "--json")
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert d["equal"] is False and d["configuration"] == []
    assert d["pages"] == [
        {
            "block": "pc.ram",
            "pages": 4,
            "ranges": [{"start": 5 * PS, "end": 6 * PS}, {"start": 100 * PS, "end": 103 * PS}],
        }
    ]


def test_iterations_of_one_stream_match_the_reference(raw_sample_dir):
    data = raw_stream(sample_by_name(RUNNING))
    a, b = memory_after(data, 1), memory_after(data, 3)
    expected = {}
    for name in a:
        pages = [
            i for i in range(len(a[name]) // PS) if a[name][i * PS : (i + 1) * PS] != b[name][i * PS : (i + 1) * PS]
        ]
        if pages:
            expected[name] = pages
    assert expected, "the sample should change memory between iterations 1 and 3"
    stream = str(raw_sample_dir / (RUNNING + ".mig"))
    result = diff(stream + "@1", stream + "@3")
    got = {d.name: [p for s, e in d.ranges for p in range(s // PS, e // PS)] for d in result.pages}
    assert got == expected


def test_blocks_added_removed_resized(running, tmp_path):
    _, out = running
    other = tmp_path / "other"
    shutil.copytree(out, other)
    m = json.loads((other / "manifest.json").read_text())
    bios = next(b for b in m["blocks"] if b["name"] == "pc.bios")
    m["blocks"].remove(bios)
    (other / bios["file"]).unlink()
    rom = next(b for b in m["blocks"] if b["name"] == "pc.rom")
    with open(other / rom["file"], "r+b") as f:
        f.truncate(rom["length"] // 2)
    rom["length"] //= 2
    (other / "extra.bin").write_bytes(bytes(PS))
    m["blocks"].append({"name": "extra.ram", "length": PS, "file": "extra.bin"})
    (other / "manifest.json").write_text(json.dumps(m))
    r = cli("diff", str(out), str(other), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["blocks_removed"] == ["pc.bios"]
    assert d["blocks_added"] == ["extra.ram"]
    assert d["blocks_resized"] == [{"block": "pc.rom", "a": rom["length"] * 2, "b": rom["length"]}]


def test_configuration_difference(raw_sample_dir):
    r = cli("diff", str(raw_sample_dir / "x86-q35.mig"), str(raw_sample_dir / "x86-fresh-S.mig"), "--json")
    assert r.returncode == 1
    fields = {c["field"]: (c["a"], c["b"]) for c in json.loads(r.stdout)["configuration"]}
    assert fields["machine"] == ("pc-q35-7.2", "pc-i440fx-7.2")


@pytest.mark.parametrize(
    "args, message",
    [
        (["{s}@99", "{s}"], "only 6 RAM iterations"),
        (["{s}", "/nonexistent/file"], "no such file"),
        (["{s}", "{tmp}"], "not an extract directory"),
    ],
)
def test_errors_exit_2(raw_sample_dir, tmp_path, args, message):
    s = str(raw_sample_dir / (RUNNING + ".mig"))
    r = cli("diff", *[a.format(s=s, tmp=tmp_path) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_compressed_sample_and_stdin(running):
    stream, out = running
    with open(SAMPLES / (RUNNING + ".mig.zst"), "rb") as f:
        r = subprocess.run(
            [sys.executable, "-m", "migstream.cli", "diff", "-", str(out)], stdin=f, capture_output=True, text=True
        )
    assert r.returncode == 0, r.stderr


def _analyze_state(name):
    from support.samples import ROOT
    from support.samples import read_zst

    return json.loads(read_zst(ROOT / "tests" / "data" / "analyze-migration" / f"{name}.state.json.zst"))


def test_device_fields_that_differ_match_analyze_migration(raw_sample_dir):
    """x86-running vs x86-stopped: the timer fields that differ, and their values,
    are those QEMU's own analyze-migration.py reports for the two captures."""
    a, b = _analyze_state("x86-running")["timer (0)"], _analyze_state("x86-stopped")["timer (0)"]
    expected = {k: (int(a[k], 16), int(b[k], 16)) for k in a if a[k] != b[k]}
    assert expected  # the clocks moved between the two captures
    r = cli("diff", str(raw_sample_dir / "x86-running.mig"), str(raw_sample_dir / "x86-stopped.mig"), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["devices_compared"] is True
    timer = next(x for x in d["devices"] if x["device"] == "timer")
    assert {f["field"]: (f["a"], f["b"]) for f in timer["fields"]} == expected
    assert any(x["device"] == "cpu" and x["change"] == "changed" for x in d["devices"])
    same = cli("diff", str(raw_sample_dir / "x86-stopped.mig"), str(raw_sample_dir / "x86-stopped.mig"), "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["devices"] == []


def test_block_migration_disks_are_compared(tmp_path):
    # Disks written by a block migration (x86-block) are compared too: a patch we make
    # in one disk file is reported as the 4 KiB blocks it touches; a disk missing from
    # one side is reported as removed.
    stream = SAMPLES / sample_by_name("x86-block")["stream"]
    a = tmp_path / "a"
    assert extract(str(stream), str(a)).error is None
    b = tmp_path / "b"
    shutil.copytree(a, b)
    with open(b / "disk-d1.bin", "r+b") as f:
        f.seek(0x218FFE)
        f.write(b"patch")  # straddles the 4 KiB boundary at 0x219000
    res = diff(str(stream), str(b))
    assert not res.equal and not res.pages
    assert res.disks == [
        {
            "device": "d1",
            "change": "differs",
            "blocks": 2,
            "block_size": 4096,
            "ranges": [{"start": 0x218000, "end": 0x21A000}],
        }
    ]
    r = cli("diff", str(a), str(b))
    assert r.returncode == 1 and "disk d1: 2 blocks of 4096 bytes differ in 1 ranges: 0x218000-0x21a000" in r.stdout
    doc = json.loads((b / "manifest.json").read_text())
    doc["disks"] = [d for d in doc["disks"] if d["device"] != "ide0-hd0"]
    (b / "manifest.json").write_text(json.dumps(doc))
    res = diff(str(a), str(b))
    assert {"device": "ide0-hd0", "change": "removed", "a": 1 << 20} in res.disks
    assert diff(str(stream), str(a)).equal
