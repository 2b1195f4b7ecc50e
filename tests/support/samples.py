"""The bundled real QEMU captures (samples/samples.json) and their truth files."""

import json
from pathlib import Path

import pytest
import zstandard

ROOT = Path(__file__).resolve().parents[2]
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


def sample_ids():
    return [s["name"] for s in load_samples()]


def sample_by_name(name: str) -> dict:
    for s in load_samples():
        if s["name"] == name:
            return s
    raise KeyError(name)


def first_difference(got: bytes, want: bytes, exclude) -> int | None:
    """The first offset where ``got`` and ``want`` differ outside the ``exclude``
    windows ((lo, hi) pairs: what pmemsave cannot see through, x86 VGA/ROM), or None."""
    start = 0
    for lo, hi in sorted(exclude) + [(len(want), len(want))]:
        if got[start:lo] != want[start:lo]:
            return next(i for i in range(start, lo) if got[i] != want[i])
        start = max(start, hi)
    return None


def compare_truth(sample, outdir):
    manifest = json.loads((outdir / "manifest.json").read_text())
    files = {b["name"]: b for b in manifest["blocks"]}
    for truth in sample["truth"]:
        want = read_zst(SAMPLES / truth["file"])
        assert len(want) == truth["length"]
        blk = files[truth["block"]]
        data = (outdir / blk["file"]).read_bytes()
        got = data[truth["block_offset"] : truth["block_offset"] + truth["length"]]
        assert len(got) == len(want)
        first = first_difference(got, want, truth["exclude"])
        if first is not None:
            pytest.fail(f"{sample['name']}: {truth['block']} differs from truth at 0x{first:x}")
    # Block migration: each disk as the source had it (the file may run on to the end
    # of the last 1 MiB chunk).
    disks = {d["device"]: d for d in manifest.get("disks", ())}
    for truth in sample.get("disks", ()):
        want = read_zst(SAMPLES / truth["file"])
        got = (outdir / disks[truth["device"]]["file"]).read_bytes()
        assert len(want) == truth["length"] and got[: len(want)] == want, f"disk {truth['device']}"
    return manifest


def channel_files(sample):
    """Multifd channel captures of a sample (samples.json "channels")."""
    return [str(SAMPLES / c["file"]) for c in sample.get("channels", ())]


def channel_args(sample):
    return [a for f in channel_files(sample) for a in ("--channel", f)]
