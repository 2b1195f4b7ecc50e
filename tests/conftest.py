"""Fixtures shared by every test, and the kind markers.

Tests live in folders by kind; each test gets its folder's marker, registered in
pyproject.toml, so ``pytest -m "not qemu"`` runs everything but real QEMU:
  unit/     the library on generated input (and single samples as fixtures)
  samples/  the bundled real QEMU captures against their truth files
  qemu/     real QEMU (7.2 under TCG) loads what we write, or writes what we read
  tui/      the Textual app, headless, and its SVG snapshots
Shared helpers are in ``support/`` (``from support.samples import ...``).
"""

from pathlib import Path

import pytest

from support.samples import load_samples
from support.samples import raw_stream

KINDS = ("unit", "samples", "qemu", "tui")


def pytest_collection_modifyitems(items):
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind in KINDS:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def samples():
    return load_samples()


@pytest.fixture(scope="session")
def raw_sample_dir(tmp_path_factory):
    """Every sample decompressed once, as a plain (seekable) file."""
    d = tmp_path_factory.mktemp("raw")
    for s in load_samples():
        (d / (s["name"] + ".mig")).write_bytes(raw_stream(s))
    return d
