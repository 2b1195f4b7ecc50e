"""Every committed real QEMU capture decodes to byte-exact guest RAM."""

import json
import subprocess
import sys

import pytest

from conftest import SAMPLES, load_samples, read_zst, sample_ids
from migstream.tools.extract import extract

SAMPLES_LIST = load_samples()


def compare_truth(sample, outdir):
    manifest = json.loads((outdir / "manifest.json").read_text())
    files = {b["name"]: b for b in manifest["blocks"]}
    for truth in sample["truth"]:
        want = read_zst(SAMPLES / truth["file"])
        assert len(want) == truth["length"]
        blk = files[truth["block"]]
        data = (outdir / blk["file"]).read_bytes()
        got = data[truth["block_offset"]:truth["block_offset"] + truth["length"]]
        assert len(got) == len(want)
        # Compare outside the windows that pmemsave cannot see through (x86 VGA/ROM).
        start = 0
        for lo, hi in sorted(truth["exclude"]) + [(len(want), len(want))]:
            if got[start:lo] != want[start:lo]:
                first = next(i for i in range(start, lo) if got[i] != want[i])
                pytest.fail(f"{sample['name']}: {truth['block']} differs from truth at 0x{first:x}")
            start = max(start, hi)
    # Block migration: each disk as the source had it (the file may run on to the end
    # of the last 1 MiB chunk).
    disks = {d["device"]: d for d in manifest.get("disks", ())}
    for truth in sample.get("disks", ()):
        want = read_zst(SAMPLES / truth["file"])
        got = (outdir / disks[truth["device"]]["file"]).read_bytes()
        assert len(want) == truth["length"] and got[:len(want)] == want, f"disk {truth['device']}"
    return manifest


def test_samples_exist():
    assert len(SAMPLES_LIST) >= 5, "samples/samples.json lists the committed captures"


def channel_files(sample):
    """Multifd channel captures of a sample (samples.json "channels")."""
    return [str(SAMPLES / c["file"]) for c in sample.get("channels", ())]


def channel_args(sample):
    return [a for f in channel_files(sample) for a in ("--channel", f)]


@pytest.mark.parametrize("name", sample_ids())
def test_extract_matches_truth(name, tmp_path):
    sample = next(s for s in SAMPLES_LIST if s["name"] == name)
    result = extract(str(SAMPLES / sample["stream"]), str(tmp_path), channels=channel_files(sample))
    assert result.error is None, str(result.error)
    manifest = compare_truth(sample, tmp_path)
    assert manifest["complete"] is True
    assert manifest["page_size"] == 4096 or sample["arch"] not in ("x86_64",)
    names = {b["name"] for b in manifest["blocks"]}
    assert sample["ram_block"] in names


@pytest.mark.parametrize("name", sample_ids())
def test_extract_cli_from_stdin_plain(name, tmp_path, raw_sample_dir):
    """The same through the command line, reading an uncompressed pipe."""
    sample = next(s for s in SAMPLES_LIST if s["name"] == name)
    raw = raw_sample_dir / (name + ".mig")
    with open(raw, "rb") as f:
        proc = subprocess.run([sys.executable, "-m", "migstream.cli", "extract", "-", "-o", str(tmp_path),
                               *channel_args(sample)],
                              stdin=f, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    compare_truth(sample, tmp_path)


@pytest.mark.parametrize("name", sample_ids())
def test_validate_accepts_sample(name, raw_sample_dir):
    sample = next(s for s in SAMPLES_LIST if s["name"] == name)
    proc = subprocess.run([sys.executable, "-m", "migstream.cli", "validate", str(raw_sample_dir / (name + ".mig")),
                           *channel_args(sample)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")
