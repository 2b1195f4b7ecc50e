"""Real QEMU as the oracle for ``migstream validate``: corruptions of real captures,
loaded into a paused destination of the same machine, accept or reject.

A corruption is named ``SAMPLE/KIND/WHERE/HOW`` (for example
``x86-fresh-S/idstr-len/full@288417:cpu/plus1``); the same sample bytes and seed give
the same names and bytes, so a name is a stable handle on one corrupted stream.

- ``corruptions(sample, raw, seed, per_kind)``: the deterministic list of
  ``Corruption`` (name, kind, bytes made on demand);
- ``qemu_verdict(target, path)``: load one file into real QEMU (``-S -incoming
  defer`` + ``migrate-incoming "exec:cat FILE"``), wait for completed/failed;
  returns ``("accept"|"reject", QEMU's error line)``;
- ``validate_inprocess(path)``: the ``migstream validate`` command on the same file
  (typer's runner in this process: the command's code without a Python start-up per
  file); ``validate_verdict(path)`` runs it as a subprocess.

Used by tests/qemu/test_qemu_oracle.py (7.2 live) and samples/oracle_verdicts.py
(records QEMU 11.1's verdicts into samples/oracle-11.1.json.zst).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .qemu import ROOT
from .qemu import Vm

MiB = 1 << 20


@dataclass(frozen=True)
class Target:
    """How to start a destination for one capture: binary, machine options, caps."""

    sample: str
    stream: str  # file name under samples/ (zstd)
    binary: str
    args: tuple[str, ...]
    caps: tuple[str, ...] = ()
    #: The capture cut after QEMU_VM_EOF: a stream without a VMDESCRIPTION (as
    #: postcopy sends them; QEMU loads it the same), so that its device headers are
    #: judged without the description (the bundled registry, decode/sections.py).
    cut_description: bool = False
    #: Only these corruption kinds (empty: all), up to ``per_field`` of each.
    kinds: tuple[str, ...] = ()
    per_field: int = 6


#: What a stream without a description is judged on differently: the device headers.
HEADER_KINDS = ("idstr", "idstr-len", "instance", "version", "type", "sid", "footer-sid", "splice")


def _x86(machine: str) -> tuple[str, ...]:
    # The captures were made with the test guest's disk on IDE; any 1 MiB raw image
    # gives the destination the same devices.
    return ("-M", machine, "-m", "32M", "-drive", "file={disk},format=raw,if=ide,snapshot=on")


def _aarch64(mem: str) -> tuple[str, ...]:
    return (
        "-M",
        "virt",
        "-cpu",
        "max",
        "-m",
        mem,
        "-machine",
        "memory-backend=mach-virt.ram",
        "-object",
        f"memory-backend-ram,id=mach-virt.ram,size={mem}",
    )


QEMU72_TARGETS = {
    t.sample: t
    for t in (
        Target("x86-fresh-S", "x86-fresh-S.mig.zst", "qemu-system-x86_64", _x86("pc")),
        Target("x86-compress", "x86-compress.mig.zst", "qemu-system-x86_64", _x86("pc"), ("compress",)),
        Target("x86-xbzrle-deltas", "x86-xbzrle-deltas.mig.zst", "qemu-system-x86_64", _x86("pc")),
        Target("x86-q35", "x86-q35.mig.zst", "qemu-system-x86_64", _x86("q35")),
        Target("x86-postcopy", "x86-postcopy.mig.zst", "qemu-system-x86_64", _x86("pc"), ("postcopy-ram",)),
        Target("aarch64-virt", "aarch64-virt.mig.zst", "qemu-system-aarch64", _aarch64("64M")),
        Target(
            "x86-q35-nodesc",
            "x86-q35.mig.zst",
            "qemu-system-x86_64",
            _x86("q35"),
            cut_description=True,
            kinds=HEADER_KINDS,
            per_field=10,
        ),
        Target(
            "aarch64-virt-nodesc",
            "aarch64-virt.mig.zst",
            "qemu-system-aarch64",
            _aarch64("64M"),
            cut_description=True,
            kinds=HEADER_KINDS,
            per_field=10,
        ),
    )
}

QEMU11 = "/work/qemu11/bin"
QEMU11_TARGETS = {
    t.sample: t
    for t in (
        Target("q11-x86-fresh", "q11-x86-fresh.mig.zst", f"{QEMU11}/qemu-system-x86_64", _x86("pc")),
        Target("q11-x86-q35", "q11-x86-q35.mig.zst", f"{QEMU11}/qemu-system-x86_64", _x86("q35")),
        Target("q11-aarch64-virt", "q11-aarch64-virt.mig.zst", f"{QEMU11}/qemu-system-aarch64", _aarch64("64M")),
        Target(
            "q11-x86-fresh-nodesc",
            "q11-x86-fresh.mig.zst",
            f"{QEMU11}/qemu-system-x86_64",
            _x86("pc"),
            cut_description=True,
            kinds=HEADER_KINDS,
            per_field=10,
        ),
        Target(
            "q11-aarch64-virt-nodesc",
            "q11-aarch64-virt.mig.zst",
            f"{QEMU11}/qemu-system-aarch64",
            _aarch64("64M"),
            cut_description=True,
            kinds=HEADER_KINDS,
            per_field=10,
        ),
    )
}


def read_sample(name: str, directory: Path | None = None) -> bytes:
    import zstandard

    path = (directory or ROOT / "samples") / name
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def target_bytes(target: Target, directory: Path | None = None) -> bytes:
    """The stream a target's corruptions start from: its capture, cut after
    QEMU_VM_EOF when the target says so."""
    raw = read_sample(target.stream, directory)
    if target.cut_description:
        from migstream.decode.description import find_description

        found = find_description(raw[-(1 << 20) :], len(raw))
        assert found, f"{target.stream} has no VMDESCRIPTION to cut"
        raw = raw[: found[0]]
    return raw


# --- the corruptions ---------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    name: str
    kind: str
    make: Callable[[], bytes]


def _patch(raw: bytes, at: int, new: bytes) -> Callable[[], bytes]:
    return lambda: raw[:at] + new + raw[at + len(new) :]


def _field_variants(value: bytes) -> list[tuple[str, bytes]]:
    """Byte flips and value changes of one big-endian field."""
    n = len(value)
    v = int.from_bytes(value, "big")
    top = (1 << (8 * n)) - 1
    out = [
        ("xor01", (v ^ 1).to_bytes(n, "big")),
        ("xor80", (v ^ (0x80 << (8 * (n - 1)))).to_bytes(n, "big")),
        ("plus1", ((v + 1) & top).to_bytes(n, "big")),
        ("minus1", ((v - 1) & top).to_bytes(n, "big")),
        ("zero", bytes(n)),
        ("ones", b"\xff" * n),
    ]
    seen = {value}
    res = []
    for how, b in out:
        if b not in seen:
            seen.add(b)
            res.append((how, b))
    return res


def _elements(raw: bytes):
    """(kind, offset, fields) of each element of the stream, from migstream's decoder
    (only to find where the fields are; QEMU judges the result)."""
    sys.path.insert(0, str(ROOT))
    import json

    from migstream.decode.decoder import StreamDecoder
    from migstream.decode.description import find_description
    from migstream.events import CommandEvent
    from migstream.events import Configuration
    from migstream.events import DeviceState
    from migstream.events import EndOfStream
    from migstream.events import PageRecord
    from migstream.events import PageRun
    from migstream.events import RamBlockList
    from migstream.events import SectionEnd
    from migstream.events import SectionStart
    from migstream.events import VmDescription

    found = find_description(raw[-(1 << 20) :], len(raw))
    desc = json.loads(found[1]) if found else None
    dec = StreamDecoder(description=desc)
    dec.feed(raw)
    dec.feed(b"")
    sections = []  # (start offset, end offset after footer, SectionStart)
    cur = None
    for ev in dec:
        t = type(ev)
        if t is SectionStart:
            cur = ev
            n = len(ev.idstr.encode("latin-1"))
            f = [("type", ev.offset, 1), ("sid", ev.offset + 1, 4)]
            if ev.type in (1, 4):  # START, FULL
                f += [
                    ("idstr-len", ev.offset + 5, 1),
                    ("idstr", ev.offset + 6, max(1, n)),
                    ("instance", ev.offset + 6 + n, 4),
                    ("version", ev.offset + 10 + n, 4),
                ]
            yield ("section", ev.offset, f, ev)
        elif t is SectionEnd:
            if ev.footer:
                yield ("footer", ev.offset, [("footer-byte", ev.offset, 1), ("footer-sid", ev.offset + 1, 4)], ev)
            if cur is not None:
                sections.append((cur.offset, ev.offset + (5 if ev.footer else 0), cur))
            cur = None
        elif t is CommandEvent:
            yield ("command", ev.offset, [("cmd", ev.offset + 1, 2), ("cmd-len", ev.offset + 3, 2)], ev)
        elif t is Configuration:
            f = [("config-type", ev.offset, 1), ("config-len", ev.offset + 1, 4)]
            sub = ev.offset + 5 + len(ev.machine)
            f.append(("machine", ev.offset + 5, max(1, len(ev.machine))))
            if sub < ev.offset + 1 + len(ev.data):
                f += [("config-sub-byte", sub, 1), ("config-sub-len", sub + 1, 1), ("config-sub-name", sub + 2, 1)]
                f.append(("config-sub-version", sub + 2 + raw[sub + 1], 4))
            yield ("configuration", ev.offset, f, ev)
        elif t is RamBlockList:
            f = [("memsize-total", ev.offset, 8)]
            at = ev.offset + 8
            for b in ev.blocks:
                n = len(b.name.encode("latin-1"))
                f += [("memsize-name-len", at, 1), ("memsize-name", at + 1, n), ("memsize-length", at + 1 + n, 8)]
                at += 1 + n + 8
                if b.page_size is not None:
                    at += 8
                if b.addr is not None:
                    at += 8
            yield ("memsize", ev.offset, f, ev)
        elif t is PageRecord:
            yield ("record", ev.offset, [("record-flags", ev.offset + 7, 1), ("record-addr", ev.offset, 7)], ev)
            if ev.payload_offset > ev.offset + 8 and ev.kind != 0x02:
                # the block name of a non-CONTINUE record
                yield ("record", ev.offset, [("record-block-len", ev.offset + 8, 1)], ev)
            if ev.kind in (0x40, 0x100):  # XBZRLE: encoding byte + be16 length; COMPRESS: be32 length
                at = ev.payload_offset - (2 if ev.kind == 0x40 else 4)
                yield ("record", ev.offset, [("record-length", at, 2)], ev)
        elif t is PageRun:
            for s in (ev.starts[0], ev.starts[len(ev.starts) // 2], ev.starts[-1]):
                o = ev.offset + s
                yield ("record", o, [("record-flags", o + 7, 1), ("record-addr", o, 7)], ev)
        elif t is EndOfStream:
            yield ("eof", ev.offset, [("eof-byte", ev.offset, 1)], ev)
        elif t is VmDescription:
            yield ("vmdesc", ev.offset, [("vmdesc-byte", ev.offset, 1), ("vmdesc-len", ev.offset + 1, 4)], ev)
        elif t is DeviceState:
            pass
    yield ("sections", 0, sections, None)


def corruptions(sample: str, raw: bytes, *, seed: int = 17, per_field: int = 6) -> list[Corruption]:
    """The deterministic corruptions of one capture, grouped by field kind: up to
    ``per_field`` of each field kind (chosen with ``seed``), plus truncations and splices."""
    by_field: dict[str, list[Corruption]] = {}
    boundaries: list[tuple[str, int]] = []
    sections = []
    for kind, off, fields, ev in _elements(raw):
        if kind == "sections":
            sections = fields
            continue
        label = kind
        if kind == "section":
            label = f"{ev.type.name.lower()}:{ev.idstr}"
        boundaries.append((label, off))
        for field, at, size in fields:
            if size <= 0 or at + size > len(raw):
                continue
            value = raw[at : at + size]
            for how, new in _field_variants(value[:4] if field in ("idstr", "machine", "memsize-name") else value):
                name = f"{sample}/{field}/{label}@{at}/{how}"
                by_field.setdefault(field, []).append(Corruption(name, field, _patch(raw, at, new)))
    rng = random.Random(f"{seed}:{sample}")
    out: list[Corruption] = []
    for field in sorted(by_field):
        cands = by_field[field]
        out += sorted(rng.sample(cands, min(per_field, len(cands))), key=lambda c: c.name)
    # Truncations at element boundaries (and one byte after them).
    cuts = rng.sample(boundaries, min(per_field * 2, len(boundaries)))
    for label, off in sorted(cuts, key=lambda x: x[1]):
        for delta, how in ((0, "at"), (1, "after1")):
            out.append(Corruption(f"{sample}/truncate/{label}@{off + delta}/{how}", "truncate", _cut(raw, off + delta)))
    out.append(Corruption(f"{sample}/truncate/end@{len(raw) - 1}/last-byte", "truncate", _cut(raw, len(raw) - 1)))
    out.append(Corruption(f"{sample}/trailing/end@{len(raw)}/junk", "trailing", lambda: raw + b"\x00junk"))
    # Splices: a section duplicated in place, removed, or moved after the next one.
    picks = rng.sample(sections, min(per_field, len(sections)))
    for start, end, ev in sorted(picks, key=lambda x: x[0]):
        label = f"{ev.type.name.lower()}:{ev.idstr}@{start}"
        out.append(Corruption(f"{sample}/splice/{label}/duplicate", "splice", _dup(raw, start, end)))
        out.append(Corruption(f"{sample}/splice/{label}/remove", "splice", _drop(raw, start, end)))
        nxt = [s for s in sections if s[0] == end]
        if nxt:
            out.append(Corruption(f"{sample}/splice/{label}/swap-next", "splice", _swap(raw, start, end, nxt[0][1])))
    return out


def _cut(raw: bytes, at: int) -> Callable[[], bytes]:
    return lambda: raw[:at]


def _dup(raw: bytes, start: int, end: int) -> Callable[[], bytes]:
    return lambda: raw[:end] + raw[start:end] + raw[end:]


def _drop(raw: bytes, start: int, end: int) -> Callable[[], bytes]:
    return lambda: raw[:start] + raw[end:]


def _swap(raw: bytes, start: int, mid: int, end: int) -> Callable[[], bytes]:
    return lambda: raw[:start] + raw[mid:end] + raw[start:mid] + raw[end:]


# --- the verdicts ----------------------------------------------------------------------


def dummy_disk(workdir: Path) -> Path:
    disk = workdir / "disk.img"
    if not disk.exists():
        with open(disk, "wb") as f:
            f.truncate(MiB)
    return disk


def _error_line(text: str) -> str:
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and "module" not in ln.lower() and "warning:" not in ln
    ]
    return " | ".join(lines[:4])[:400]


def qemu_verdict(target: Target, path: Path, workdir: Path, tag: str, timeout: float = 30) -> tuple[str, str]:
    """Load ``path`` into a paused destination; ("accept", "") or ("reject", why)."""
    disk = dummy_disk(workdir)
    args = [a.replace("{disk}", str(disk)) for a in target.args] + ["-S", "-incoming", "defer"]
    vm = Vm(target.binary, args, workdir, tag)
    try:
        vm.caps(*target.caps)
        vm.cmd("migrate-incoming", uri=f"exec:cat {path}")
        t0 = time.monotonic()
        while True:
            try:
                st = vm.cmd("query-migrate")
            except Exception:
                vm.proc.wait(timeout=10)
                return "reject", _error_line(vm.stderr())
            status = st.get("status")
            if status == "completed":
                return "accept", ""
            if status in ("failed", "postcopy-paused"):
                # A postcopy destination pauses on a broken stream (waits for a recovery).
                return "reject", _error_line(st.get("error-desc", "") + "\n" + vm.stderr())
            if time.monotonic() - t0 > timeout:
                return "timeout", _error_line(vm.stderr())
            time.sleep(0.02)
    finally:
        vm.close()
        for suffix in ("qmp", "serial", "stderr"):
            (workdir / f"{tag}.{suffix}").unlink(missing_ok=True)


def validate_verdict(path: Path) -> tuple[str, str]:
    """``migstream validate FILE``: ("accept", first line) on exit 0, else ("reject", message)."""
    r = subprocess.run(
        [sys.executable, "-m", "migstream", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    text = (r.stdout + r.stderr).strip().splitlines()
    return ("accept" if r.returncode == 0 else "reject"), (text[-1] if text else "")[:300]


def destination_description(target: Target, workdir: Path) -> Path:
    """A stream of a paused VM started like ``target``'s destination: its
    VMDESCRIPTION lists the destination's devices (``validate --description``)."""
    out = workdir / f"{target.sample}.described.mig"
    if not out.exists():
        disk = dummy_disk(workdir)
        args = [a.replace("{disk}", str(disk)) for a in target.args] + ["-S"]
        with Vm(target.binary, args, workdir, f"desc-{target.sample}") as vm:
            vm.migrate_to_file(out)
    return out


#: Captures without a VMDESCRIPTION (postcopy): `validate` is also run with
#: ``--description`` of the destination's own devices.
NO_DESCRIPTION = frozenset({"x86-postcopy"})


def without_description(target: Target) -> bool:
    return target.sample in NO_DESCRIPTION or target.cut_description


def run_one(target: Target, c: Corruption, workdir: Path, tag: str, *, want_qemu: bool = True) -> dict:
    """Both verdicts for one corruption (the file lives only during the call); for a
    capture without a description also `validate --description` (the destination's)."""
    path = workdir / f"{tag}.mig"
    path.write_bytes(c.make())
    try:
        row = {"name": c.name, "kind": c.kind}
        if want_qemu:
            row["qemu"], row["qemu_error"] = qemu_verdict(target, path, workdir, tag)
        row["validate"], row["validate_message"] = validate_inprocess(path)
        if without_description(target):
            desc = destination_description(target, workdir)
            row["described"], row["described_message"] = validate_inprocess(path, "--description", str(desc))
        return row
    finally:
        path.unlink(missing_ok=True)


def scratch(prefix: str = "oracle-") -> Path:
    """A work directory QEMU 11.1's chroot also sees (/var/tmp)."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def fields_of(name: str) -> tuple[str, str]:
    sample, kind = name.split("/")[:2]
    return sample, kind


def load_table(path: Path) -> dict:
    """A recorded verdict table (samples/oracle_verdicts.py), zstd or plain JSON."""
    import json

    data = Path(path).read_bytes()
    if path.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return json.loads(data)


def target_corruptions(target: Target, directory: Path | None = None) -> list[Corruption]:
    """A target's corruptions: of its kinds, up to its ``per_field`` each."""
    made = corruptions(target.sample, target_bytes(target, directory), per_field=target.per_field)
    return [c for c in made if not target.kinds or c.kind in target.kinds]


def all_corruptions(targets: dict, directory: Path | None = None) -> dict[str, tuple[Target, Corruption]]:
    return {c.name: (t, c) for t in targets.values() for c in target_corruptions(t, directory)}


def validate_inprocess(path: Path, *options: str) -> tuple[str, str]:
    """The `validate` command run in this process (typer's runner): the same code,
    without a Python start-up per file."""
    from typer.testing import CliRunner

    from migstream.cli import app as cli_app

    r = CliRunner().invoke(cli_app, ["validate", *options, str(path)])
    text = (r.output or "").strip().splitlines()
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        return "crash", repr(r.exception)
    return ("accept" if r.exit_code == 0 else "reject"), (text[-1] if text else "")[:300]


#: Corruptions where `validate` cannot give QEMU's verdict, with why (docs/validate.md).
KNOWN_DISAGREEMENTS: dict[str, str] = {
    # None now.  The three ioapic v2-labelled sections that were here (QEMU loads them:
    # the v2 layout is v3's) agree since decode/sections.py knows the unchanged layout.
}


def known_disagreement(name: str) -> str | None:
    """Why ``name`` is a known disagreement (KNOWN_DISAGREEMENTS), or None."""
    return KNOWN_DISAGREEMENTS.get(name)


def classify_row(row: dict) -> list[str]:
    """classify() of a row's verdicts: [plain] or, with ``--description``, [plain,
    described] (with the destination's devices only the payload lengths of a stream
    without a description can stay unverified)."""
    out = [classify(row["name"], row["qemu"], row["validate"], row["validate_message"])]
    if "described" in row:
        out.append(classify(row["name"], row["qemu"], row["described"], row["described_message"]))
    return out


def classify(name: str, qemu: str, validate: str, message: str) -> str:
    """ "agree"; "unverified" (QEMU rejects, validate accepts saying that device
    instance ids were not verified: a stream without a description); "known" (listed in
    KNOWN_DISAGREEMENTS and still disagreeing); else "wrong"."""
    if qemu == validate:
        return "wrong" if known_disagreement(name) else "agree"
    if validate == "accept" and "not verified" in message:
        return "unverified"
    return "known" if known_disagreement(name) else "wrong"
