"""docs/json.md against the JSON the commands really print (issue 16, part 3).

Each example in docs/json.md sits under a heading naming its document (``### info``).
The keys of the example -- every key path, through lists and nested objects -- must
equal the keys the commands emit on real samples (the union over the runs listed in
``RUNS``).  Objects keyed by data (block names, section types, device fields) are
walked as ``{}``; device state is opaque.  Every document also carries ``"schema": 1``
first, and all are indented the same way.

``python tests/unit/test_json_docs.py`` prints examples cut from the real output
(one element per list, one entry per data-keyed object), to refresh the docs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migstream.cli import app
from migstream.cli.jsonout import SCHEMA
from support.samples import ROOT
from support.samples import channel_files
from support.samples import read_zst
from support.samples import sample_by_name

DOC = ROOT / "docs" / "json.md"

#: Per document: objects whose keys are data, and objects not walked at all.
DATA_KEYED = {
    "info": {"sections", "markers", "records", "pages_by_block", "pages_by_block{}", "commands", "pages_never_sent",
             "block_devices", "dirty_bitmaps"},
    "devices": set(),
    "diff": set(),
    "records": {"fields"},
    "extract": set(),
    "encode": set(),
    "error": set(),
}  # fmt: skip
OPAQUE = {
    "devices": {"sections[].state", "configuration.state"},
    "diff": {"configuration[].a", "configuration[].b", "devices[].fields[].a", "devices[].fields[].b"},
}


def key_paths(doc, name: str, path: str = "") -> set[str]:
    out: set[str] = set()
    if path in OPAQUE.get(name, ()):
        return out
    if isinstance(doc, dict):
        data = path in DATA_KEYED[name]
        for k, v in doc.items():
            p = f"{path}{{}}" if data else (f"{path}.{k}" if path else k)
            out.add(p)
            out |= key_paths(v, name, p)
    elif isinstance(doc, list):
        for v in doc:
            out |= key_paths(v, name, f"{path}[]")
    return out


def _sample(tmp: Path, name: str) -> str:
    s = sample_by_name(name)
    p = tmp / f"{name}.mig"
    if not p.exists():
        src = ROOT / "samples" / s["stream"]
        p.write_bytes(read_zst(src) if src.name.endswith(".zst") else src.read_bytes())
    return str(p)


def _qcow2(tmp: Path) -> str:
    """A real QEMU 11.1 qcow2 image with two internal snapshots (samples/README.md)."""
    p = tmp / "snapshots.qcow2"
    if not p.exists():
        p.write_bytes(read_zst(ROOT / "samples" / "q11-qcow2-2m-extl2.qcow2.zst"))
    return str(p)


def _chan(name: str) -> list[str]:
    return [a for c in channel_files(sample_by_name(name)) for a in ("--channel", c)]


def runs(tmp: Path) -> dict[str, list[list[str]]]:
    """Document -> command lines whose output it describes."""
    stopped = _sample(tmp, "x86-stopped")
    ex = str(tmp / "ex")
    return {
        "info": [
            ["info", "--json", stopped],
            ["info", "--json", _sample(tmp, "x86-multifd-nocomp"), *_chan("x86-multifd-nocomp")],
            ["info", "--json", _sample(tmp, "q10-multifd-nocomp")],  # without its channels: warnings
            ["info", "--json", _sample(tmp, "libvirt-raw")],
            ["info", "--json", _sample(tmp, "x86-block")],
            ["info", "--json", _sample(tmp, "x86-dirty-bitmaps")],
            ["info", "--json", _sample(tmp, "x86-ignore-shared")],
            ["info", "--json", _qcow2(tmp), "--snapshot", "snap1"],
        ],
        "snapshots": [["snapshots", "--json", _qcow2(tmp)]],
        "devices": [["devices", "--json", stopped], ["devices", "--json", _sample(tmp, "x86-xbzrle")]],
        "diff": [
            ["diff", "--json", stopped, _sample(tmp, "x86-running")],
            ["diff", "--json", _sample(tmp, "x86-block"), stopped],
        ],
        "records": [
            ["records", "--json", stopped],
            ["records", "--json", _sample(tmp, "x86-multifd-nocomp"), *_chan("x86-multifd-nocomp")],
        ],
        "extract": [["extract", "--json", stopped, "-o", ex]],
        "encode": [
            ["encode", ex, "-o", str(tmp / "e1.mig"), "--json", "--then", ex, "--xbzrle-cache", "1M"],
            ["encode", ex, "-o", str(tmp / "e2.mig"), "--json", "--compress-threads", "1"],
            ["encode", ex, "-o", str(tmp / "e3.mig"), "--json", "--mapped-ram"],
        ],
        "error": [["info", "--json", str(ROOT / "README.md")]],
    }


def emitted(tmp: Path) -> dict[str, list]:
    """Document -> the JSON objects the runs printed (each line, for records)."""
    out: dict[str, list] = {}
    runner = CliRunner()
    for name, lines in runs(tmp).items():
        docs = out.setdefault(name, [])
        for args in lines:
            r = runner.invoke(app, args)
            assert r.exit_code in ((1,) if name == "error" else (0, 1)), (args, r.stderr)
            if name == "records":
                docs.extend(json.loads(x) for x in r.stdout.splitlines())
            else:
                assert r.stdout.startswith('{\n  "schema": '), (args, r.stdout[:80])  # one indentation
                docs.append(json.loads(r.stdout))
    return out


def documented() -> dict[str, list]:
    """Heading -> the JSON examples under it in docs/json.md."""
    out: dict[str, list] = {}
    heading = None
    for m in re.finditer(r"^### (\w+)$|^```json\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL):
        if m.group(1):
            heading = m.group(1)
        elif heading is not None:
            body = m.group(2)
            docs = [json.loads(x) for x in body.splitlines()] if heading == "records" else [json.loads(body)]
            out.setdefault(heading, []).extend(docs)
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return emitted(tmp_path_factory.mktemp("json-docs"))


def test_every_document_is_documented(real):
    assert set(documented()) == set(real)


@pytest.mark.parametrize("name", sorted(DATA_KEYED))
def test_documented_keys_are_the_emitted_keys(real, name):
    docs = documented()[name]
    if name == "records":
        # Key paths per event kind: each kind is one line of the example.
        def by_event(lines):
            kinds: dict[str, set[str]] = {}
            for d in lines:
                kinds.setdefault(d["event"], set()).update(key_paths(d, name))
            return kinds

        assert by_event(docs) == by_event(real[name])
    else:
        want = set().union(*(key_paths(d, name) for d in real[name]))
        got = set().union(*(key_paths(d, name) for d in docs))
        assert got == want, {"documented, not emitted": sorted(got - want), "emitted, undocumented": sorted(want - got)}
    for d in real[name] + docs:
        assert next(iter(d)) == "schema" and d["schema"] == SCHEMA


def _cut(doc, name: str, path: str = ""):
    """An example from a real document: one element per list (keys merged), one
    entry per data-keyed object."""
    if path in OPAQUE.get(name, ()):
        return doc
    if isinstance(doc, dict):
        if path in DATA_KEYED[name] and doc:
            k = next(iter(doc))
            return {k: _cut(doc[k], name, f"{path}{{}}")}
        return {k: _cut(v, name, f"{path}.{k}" if path else k) for k, v in doc.items()}
    if isinstance(doc, list) and doc:
        if all(isinstance(v, dict) for v in doc):
            merged: dict = {}
            for v in doc:
                merged = _merge(merged, v)
            return [_cut(merged, name, f"{path}[]")]
        return doc[:2]
    return doc


def _merge(a, b):
    """Deep union of two documents of one kind (first non-empty value wins)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a if a not in (None, [], {}) else b


if __name__ == "__main__":  # print examples cut from real output
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, docs in emitted(Path(tmp)).items():
            print(f"### {name}")
            if name == "records":
                seen = {}
                for d in docs:
                    seen.setdefault(d["event"], d)
                print("\n".join(json.dumps(d) for d in seen.values()))
            else:
                merged: dict = {}
                for d in docs:
                    merged = _merge(merged, d)
                print(json.dumps(_cut(merged, name), indent=2))
    sys.exit(0)
