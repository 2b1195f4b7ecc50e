"""Every committed real QEMU capture decodes to byte-exact guest RAM."""

import subprocess
import sys

import pytest

from migstream.tools.extract import extract
from support.samples import SAMPLES
from support.samples import channel_args
from support.samples import channel_files
from support.samples import compare_truth
from support.samples import load_samples
from support.samples import sample_ids

SAMPLES_LIST = load_samples()


def test_samples_exist():
    assert len(SAMPLES_LIST) >= 5, "samples/samples.json lists the committed captures"


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
        proc = subprocess.run(
            [sys.executable, "-m", "migstream.cli", "extract", "-", "-o", str(tmp_path), *channel_args(sample)],
            stdin=f,
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    compare_truth(sample, tmp_path)


@pytest.mark.parametrize("name", sample_ids())
def test_validate_accepts_sample(name, raw_sample_dir):
    sample = next(s for s in SAMPLES_LIST if s["name"] == name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "migstream.cli",
            "validate",
            str(raw_sample_dir / (name + ".mig")),
            *channel_args(sample),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")
