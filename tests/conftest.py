import json
from pathlib import Path

import pytest
import zstandard

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def load_samples():
    path = SAMPLES / "samples.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())


def read_zst(path: Path) -> bytes:
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()


def raw_stream(sample: dict) -> bytes:
    """The sample file's content: .zst files decompressed, others (libvirt images
    with their own compression) as committed."""
    path = SAMPLES / sample["stream"]
    return read_zst(path) if path.name.endswith(".zst") else path.read_bytes()


@pytest.fixture(scope="session")
def samples():
    return load_samples()


def sample_ids():
    return [s["name"] for s in load_samples()]


def sample_by_name(name: str) -> dict:
    for s in load_samples():
        if s["name"] == name:
            return s
    raise KeyError(name)


@pytest.fixture(scope="session")
def raw_sample_dir(tmp_path_factory):
    """Every sample decompressed once, as a plain (seekable) file."""
    d = tmp_path_factory.mktemp("raw")
    for s in load_samples():
        (d / (s["name"] + ".mig")).write_bytes(raw_stream(s))
    return d
