"""``migstream devices``: device state decoded with the stream's VMDESCRIPTION."""

from __future__ import annotations

from typing import Any

import typer

from .jsonout import print_json
from .progress import DecodeProgress
from .progress import stream_size
from .root import INSPECT
from .root import InputOptions
from .root import JsonOpt
from .root import StreamArg
from .root import app
from .root import err
from .root import reads_stream
from .root import run_command


@app.command(rich_help_panel=INSPECT)
@reads_stream()
def devices(stream: StreamArg, inp: InputOptions, json_out: JsonOpt = False) -> None:
    """Decode every device (non-RAM) section: fields, arrays, structs, subsections."""

    def go():
        from ..tools.devices import device_states  # imported on use: the CLI starts faster

        prog = DecodeProgress(stream_size(stream), inp.progress)
        try:
            doc = device_states(stream, progress=prog, **inp.read_kwargs())
        finally:
            prog.done()
        if json_out:
            print_json(doc)
        else:
            _print(doc)
        for w in doc["warnings"]:
            err(f"warning at offset 0x{w['offset']:x}: {w['message']}")
        for s in doc["sections"]:
            if isinstance(s.get("state"), dict) and "__undescribed__" in s["state"]:
                u = s["state"]["__undescribed__"]
                err(
                    f"warning: section {s['idstr']} (#{s['section_id']}): {len(u['bytes']) // 2} bytes at offset "
                    f"0x{u['offset']:x} not covered by the VMDESCRIPTION; kept as hex"
                )
        failed = [s for s in doc["sections"] if s.get("error")]
        for s in failed:
            err(s["error"]["error"])
        if doc["error"]:
            err(doc["error"]["error"])
        if doc["error"] or failed:
            raise typer.Exit(1)

    run_command(go, json_out=json_out)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "null" if v is None else str(v).lower()
    if isinstance(v, int):
        return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}" + (f" ({v})" if v < 0 else "")
    if isinstance(v, str):
        return v if len(v) <= 96 else f"{v[:96]}... ({len(v) // 2} bytes)"
    return str(v)


def _lines(state: dict, indent: str, out: list[str]) -> None:
    for k, v in state.items():
        if isinstance(v, dict):
            out.append(f"{indent}{k}:")
            _lines(v, indent + "  ", out)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, e in enumerate(v):
                out.append(f"{indent}{k}[{i}]:")
                _lines(e, indent + "  ", out)
        elif isinstance(v, list):
            items = ", ".join(_fmt(e) for e in v[:16])
            more = f", ... ({len(v)} elements)" if len(v) > 16 else ""
            out.append(f"{indent}{k} = [{items}{more}]")
        else:
            out.append(f"{indent}{k} = {_fmt(v)}")


def _print(doc: dict) -> None:
    out = []
    cfg = doc["configuration"]
    if cfg:
        out.append(
            f"configuration  machine {cfg['machine']}"
            + (f", target page bits {cfg['target_page_bits']}" if cfg["target_page_bits"] else "")
            + (f", capabilities {', '.join(cfg['capabilities'])}" if cfg["capabilities"] else "")
        )
    if not doc["has_description"]:
        out.append("(no VMDESCRIPTION: device sections are framed, not decoded)")
    for s in doc["sections"]:
        head = (
            f"0x{s['offset']:010x}  {s['type']:<5} #{s['section_id']:<3} {s['idstr']} "
            f"instance {s['instance_id']} version {s['version_id']}  {s['size']} bytes"
        )
        if s.get("vmsd_name") and s["vmsd_name"] != s["idstr"].rsplit("/", 1)[-1]:
            head += f"  (vmsd {s['vmsd_name']})"
        out.append(head)
        if s.get("error"):
            out.append(f"  ERROR {s['error']['error']}")
        elif s.get("state"):
            _lines(s["state"], "  ", out)
        elif s.get("note"):
            out.append(f"  ({s['note']})")
    print("\n".join(out))
