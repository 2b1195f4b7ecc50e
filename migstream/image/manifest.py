"""Reading the ``manifest.json`` of an extract directory (written by RamImage).

One reader for every consumer of the layout (``encode``, ``diff``), so that the
same manifest is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..errors import UsageError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ManifestBlock:
    name: str
    length: int
    path: str  # the block file, inside the directory
    entry: dict  # the manifest's entry as written (absent, addr, ram_addr, ...)


def read_manifest(directory: str) -> tuple[str, dict, list[ManifestBlock]]:
    """(manifest path, document, blocks) of an extract directory; UsageError when
    it is not one or its manifest is unusable.  Block files are not opened here."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise UsageError(f"{directory}: not a directory")
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UsageError(
            f"{directory}: not an extract directory (no manifest.json, the layout `migstream extract` writes)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("blocks"), list):
        raise UsageError(f"{path}: manifest has no 'blocks' list")
    return path, doc, _files(directory, path, doc["blocks"], "block", "name")


def read_disks(directory: str, path: str, doc: dict) -> list[ManifestBlock]:
    """The manifest's ``disks`` (block migration), as ManifestBlocks named by device."""
    return _files(directory, path, doc.get("disks") or (), "disk", "device")


def _files(directory: str, path: str, entries, what: str, name_key: str) -> list[ManifestBlock]:
    """Entries of {name_key, length, file}, each file inside the directory."""
    out = []
    for i, entry in enumerate(entries):
        try:
            name, length, fname = entry[name_key], int(entry["length"]), entry["file"]
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{path}: {what} entry {i} lacks {name_key}/length/file") from None
        if not isinstance(fname, str) or os.path.isabs(fname) or ".." in fname.split("/"):
            raise UsageError(f"{path}: {what} {name}: file name {fname!r} leaves the directory")
        out.append(ManifestBlock(name, length, os.path.join(directory, fname), entry))
    return out
