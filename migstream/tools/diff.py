"""Comparing the guest memory, configuration and device state two saves describe.

A side is an extract directory (``manifest.json`` + block files), a stream, or
``STREAM@N``: the memory a stream has delivered after its first N RAM PART
sections (iterations).  Streams are decoded into a temporary extract directory
first (sparse files), then block files are compared page by page in chunks, so
memory stays flat whatever the guest size.  Device sections of whole streams are
decoded with their VMDESCRIPTION and compared field by field.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from ..containers.capturedir import is_capture_dir
from ..containers.pcap.files import split_selector
from ..containers.qcow2 import split_snapshot
from ..errors import UsageError
from ..image.manifest import read_disks
from ..image.manifest import read_manifest
from .devices import device_states
from .extract import extract

_CHUNK = 16 << 20  # bytes compared per step
_DISK_BLOCK = 4096  # granularity of disk differences
_CONFIG_KEYS = ("capabilities", "target_page_bits")  # manifest keys compared when both sides have them


@dataclass
class Side:
    label: str
    page_size: int
    machine: str | None
    blocks: dict[str, tuple[str, int]]  # name -> (file path, length)
    complete: bool = True
    config: dict = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # blocks listed but not present in the data
    devices: dict | None = None  # (idstr, instance_id, n) -> decoded state; None: not known
    disks: dict[str, tuple[str, int]] = field(default_factory=dict)  # block migration: device -> (file, length)


@dataclass
class BlockDiff:
    name: str
    pages: int  # pages that differ
    ranges: list[tuple[int, int]]  # [start, end) byte offsets of differing stretches

    def as_dict(self) -> dict:
        return {"block": self.name, "pages": self.pages, "ranges": [{"start": s, "end": e} for s, e in self.ranges]}


@dataclass
class DiffResult:
    a: Side
    b: Side
    config: list[dict]  # {"field", "a", "b"}
    added: list[str]  # blocks only in b
    removed: list[str]  # blocks only in a
    resized: list[dict]  # {"block", "a", "b"}
    pages: list[BlockDiff]
    devices: list[dict] = field(default_factory=list)  # {"device", "instance_id", "change", "fields"}
    devices_compared: bool = False
    #: Block migration disks: {"device", "change": added/removed/resized/differs, ...}
    disks: list[dict] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (
            self.config or self.added or self.removed or self.resized or self.pages or self.devices or self.disks
        )

    def as_dict(self) -> dict:
        return {
            "equal": self.equal,
            "a": {
                "label": self.a.label,
                "machine": self.a.machine,
                "page_size": self.a.page_size,
                "complete": self.a.complete,
            },
            "b": {
                "label": self.b.label,
                "machine": self.b.machine,
                "page_size": self.b.page_size,
                "complete": self.b.complete,
            },
            "configuration": self.config,
            "blocks_added": self.added,
            "blocks_removed": self.removed,
            "blocks_resized": self.resized,
            "pages": [d.as_dict() for d in self.pages],
            "devices_compared": self.devices_compared,
            "devices": self.devices,
            "disks": self.disks,
        }


_AT = re.compile(r"^(?P<path>.+)@(?P<n>\d+)$")


def open_side(
    spec: str,
    workdir: str,
    *,
    page_size: int | None = None,
    allow_hook: bool = False,
    progress: Callable[[str], Any] | None = None,
) -> Side:
    """Resolve a side: an extract directory, a stream (or capture directory, with its
    channel files), or STREAM@N (the memory after N RAM PART sections).  Streams are
    decoded under ``workdir``.  ``progress(spec)`` gives a progress callable for a
    side (its ``done()`` is called after)."""
    if os.path.isdir(spec) and not is_capture_dir(spec):
        return _side_from_dir(spec, spec)
    until = None
    m = _AT.match(spec)
    qcow2_snapshot = split_snapshot(spec)[1] is not None  # IMAGE@SNAPSHOT of a qcow2 image, not STREAM@N
    if m and not os.path.exists(spec) and not qcow2_snapshot:
        spec, until = m.group("path"), int(m.group("n"))
    if spec != "-" and not qcow2_snapshot and not os.path.exists(split_selector(spec)[0]):  # capture.pcap#N
        raise UsageError(f"{spec}: no such file or directory")
    out = tempfile.mkdtemp(prefix="side-", dir=workdir)
    prog = progress(spec) if progress is not None else None
    try:
        result = extract(spec, out, page_size=page_size, allow_hook=allow_hook, until_iteration=until, progress=prog)
    finally:
        if prog is not None:
            prog.done()
    if result.error is not None:
        raise result.error
    label = spec if until is None else f"{spec}@{until}"
    side = _side_from_dir(out, label)
    if until is None and spec != "-":
        # Device state is the final one: only whole streams have it (stdin cannot be read twice).
        side.devices = _device_map(device_states(spec, page_size=page_size, allow_hook=allow_hook))
    return side


def _device_map(doc: dict) -> dict:
    """(idstr, instance_id, occurrence) -> decoded state (or the payload size when
    a section could not be decoded)."""
    out: dict = {}
    for sec in doc["sections"]:
        key = (sec["idstr"], sec["instance_id"])
        n = sum(1 for k in out if k[:2] == key)
        state = sec.get("state")
        out[key + (n,)] = state if state is not None else {"__size__": sec["size"], "__undecoded__": True}
    return out


def _field_changes(a, b, path: str, out: list, limit: int = 10000) -> None:
    """Leaves that differ between two decoded states, as {"field", "a", "b"}."""
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                out.append({"field": sub, "a": a.get(k), "b": b.get(k)})
            else:
                _field_changes(a[k], b[k], sub, out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _field_changes(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append({"field": path, "a": a, "b": b})


def compare_devices(a: dict, b: dict) -> list[dict]:
    changes = []
    for key in list(a) + [k for k in b if k not in a]:
        name, instance, n = key
        entry = {"device": name, "instance_id": instance, **({"occurrence": n} if n else {})}
        if key not in b:
            changes.append({**entry, "change": "removed"})
        elif key not in a:
            changes.append({**entry, "change": "added"})
        else:
            fields: list = []
            _field_changes(a[key], b[key], "", fields)
            if fields:
                changes.append({**entry, "change": "changed", "fields": fields})
    return changes


def _side_from_dir(directory: str, label: str) -> Side:
    path, manifest, entries = read_manifest(directory)
    blocks = {b.name: (b.path, b.length) for b in entries}
    try:
        page_size = int(manifest["page_size"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path}: no page_size in the manifest") from None
    disks = {d.name: (d.path, d.length) for d in read_disks(directory, path, manifest)}
    for what, files in (("block", blocks), ("disk", disks)):
        for name, (file, length) in files.items():
            if not os.path.isfile(file):
                raise UsageError(f"{directory}: {what} {name}: file {file} is missing")
            if os.path.getsize(file) != length:
                raise UsageError(
                    f"{directory}: {what} {name}: file is {os.path.getsize(file)} bytes, manifest says {length}"
                )
    absent = {b["name"] for b in manifest["blocks"] if b.get("absent")}
    config = {k: manifest[k] for k in _CONFIG_KEYS if manifest.get(k) is not None}
    return Side(
        label,
        page_size,
        manifest.get("machine"),
        blocks,
        bool(manifest.get("complete", True)),
        config=config,
        absent=absent,
        disks=disks,
    )


def differing_pages(file_a: str, file_b: str, length: int, page_size: int) -> BlockDiff:
    """Pages of two equally long block files that differ, as byte ranges."""
    ranges: list[tuple[int, int]] = []
    count = 0
    chunk = max(page_size, _CHUNK - _CHUNK % page_size)
    buf_a = np.empty(chunk, dtype=np.uint8)
    buf_b = np.empty(chunk, dtype=np.uint8)
    with open(file_a, "rb") as fa, open(file_b, "rb") as fb:
        pos = 0
        while pos < length:
            n = min(chunk, length - pos)
            if _both_holes(fa.fileno(), fb.fileno(), pos, n):
                pos += n
                continue
            ra = os.preadv(fa.fileno(), [buf_a.data[:n]], pos)
            rb = os.preadv(fb.fileno(), [buf_b.data[:n]], pos)
            if ra != n or rb != n:
                raise UsageError(f"short read at offset {pos:#x} of {file_a if ra != n else file_b}")
            full = n - n % page_size
            a = buf_a[:full].reshape(-1, page_size)
            b = buf_b[:full].reshape(-1, page_size)
            differ = (a != b).any(axis=1)
            if full < n and not np.array_equal(buf_a[full:n], buf_b[full:n]):
                differ = np.append(differ, True)
            idx = np.flatnonzero(differ)
            if len(idx):
                count += len(idx)
                # Consecutive pages -> one range.
                breaks = np.flatnonzero(np.diff(idx) != 1)
                firsts = np.concatenate(([idx[0]], idx[breaks + 1]))
                lasts = np.concatenate((idx[breaks], [idx[-1]]))
                for s, e in zip(firsts.tolist(), lasts.tolist()):
                    start, end = pos + s * page_size, min(length, pos + (e + 1) * page_size)
                    if ranges and ranges[-1][1] == start:
                        ranges[-1] = (ranges[-1][0], end)
                    else:
                        ranges.append((start, end))
            pos += n
    return BlockDiff(os.path.basename(file_a), count, ranges)


def _both_holes(fd_a: int, fd_b: int, pos: int, n: int) -> bool:
    """True when [pos, pos+n) is a hole in both files (reads as zeros in both)."""
    for fd in (fd_a, fd_b):
        try:
            if os.lseek(fd, pos, os.SEEK_DATA) < pos + n:
                return False
        except OSError as exc:  # ENXIO: no data after pos; otherwise (no SEEK_DATA): unknown
            if exc.errno != errno.ENXIO:
                return False
    return True


def compare(a: Side, b: Side) -> DiffResult:
    config = []
    for name, va, vb in (("machine", a.machine, b.machine), ("page_size", a.page_size, b.page_size)):
        if va != vb:
            config.append({"field": name, "a": va, "b": vb})
    for key in sorted(set(a.config) & set(b.config)):  # an older manifest may lack them
        if a.config[key] != b.config[key]:
            config.append({"field": key, "a": a.config.get(key), "b": b.config.get(key)})
    added = [n for n in b.blocks if n not in a.blocks]
    removed = [n for n in a.blocks if n not in b.blocks]
    resized, pages = [], []
    for name, (file_a, len_a) in a.blocks.items():
        if name not in b.blocks:
            continue
        file_b, len_b = b.blocks[name]
        if len_a != len_b:
            resized.append({"block": name, "a": len_a, "b": len_b})
            continue
        d = differing_pages(file_a, file_b, len_a, a.page_size)
        if d.pages:
            d.name = name
            pages.append(d)
    result = DiffResult(a, b, config, added, removed, resized, pages, disks=_compare_disks(a, b))
    if a.devices is not None and b.devices is not None:
        result.devices = compare_devices(a.devices, b.devices)
        result.devices_compared = True
    return result


def _compare_disks(a: Side, b: Side) -> list[dict]:
    """Block migration disks, in 4 KiB blocks (a disk file ends at its last 1 MiB chunk)."""
    out = []
    for name in sorted(set(a.disks) | set(b.disks)):
        if name not in b.disks:
            out.append({"device": name, "change": "removed", "a": a.disks[name][1]})
        elif name not in a.disks:
            out.append({"device": name, "change": "added", "b": b.disks[name][1]})
        elif a.disks[name][1] != b.disks[name][1]:
            out.append({"device": name, "change": "resized", "a": a.disks[name][1], "b": b.disks[name][1]})
        else:
            d = differing_pages(a.disks[name][0], b.disks[name][0], a.disks[name][1], _DISK_BLOCK)
            if d.pages:
                out.append(
                    {
                        "device": name,
                        "change": "differs",
                        "blocks": d.pages,
                        "block_size": _DISK_BLOCK,
                        "ranges": [{"start": s, "end": e} for s, e in d.ranges],
                    }
                )
    return out


def diff(
    spec_a: str,
    spec_b: str,
    *,
    page_size: int | None = None,
    allow_hook: bool = False,
    progress: Callable[[str], Any] | None = None,
) -> DiffResult:
    """Compare two sides (see ``open_side``)."""
    if spec_a == "-" and spec_b == "-":
        raise UsageError("only one side can be read from stdin")
    with tempfile.TemporaryDirectory(prefix="migstream-diff-") as work:
        a = open_side(spec_a, work, page_size=page_size, allow_hook=allow_hook, progress=progress)
        b = open_side(spec_b, work, page_size=page_size, allow_hook=allow_hook, progress=progress)
        return compare(a, b)
