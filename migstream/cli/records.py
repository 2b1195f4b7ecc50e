"""``migstream records``: one line (or JSON object) per record and event."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import UsageError
from ..events import CommandEvent
from ..events import Configuration
from ..events import DeviceState
from ..events import EndOfStream
from ..events import FileHeader
from ..events import PackageEnd
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlockList
from ..events import RamMarker
from ..events import SectionEnd
from ..events import SectionStart
from ..events import Undecoded
from ..events import VmDescription
from ..events import flag_names
from ..tools.summary import ENCODING_NAMES
from ..tools.vocabulary import page_kind_word
from ..wire.grammar import RamFlag
from .jsonout import line
from .root import INSPECT
from .root import InputOptions
from .root import StreamArg
from .root import app
from .root import reads_stream
from .root import run_command
from .root import warn_all


def _record_rows(events):
    """(event, dict) for each record line, expanding page runs."""
    section = "-"
    for ev in events:
        t = type(ev)
        if t is PageRun:
            for rec in ev.records():
                yield _page_row(rec, section)
            continue
        if t is PageRecord:
            yield _page_row(ev, section)
            continue
        if t is SectionStart:
            section = f"{ev.type.name}#{ev.section_id}"
            yield {
                "offset": ev.offset,
                "event": "section",
                "section": section,
                "type": ev.type.name,
                "idstr": ev.idstr,
                "instance_id": ev.instance_id,
                "version_id": ev.version_id,
            }
        elif t is SectionEnd:
            yield {"offset": ev.offset, "event": "section_end", "section": section, "footer": ev.footer}
        elif t is RamMarker:
            yield {
                "offset": ev.offset,
                "event": "ram",
                "section": section,
                "flags": ev.flags,
                "flag_names": flag_names(ev.flags),
                "encoding": ev.kind.name.lower(),
                "payload_size": 0,
            }
        elif t is RamBlockList:
            yield {
                "offset": ev.offset,
                "event": "mem_size",
                "section": section,
                "total": ev.total,
                "blocks": [{"name": b.name, "length": b.used_length} for b in ev.blocks],
            }
        elif t is CommandEvent:
            fields = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in ev.fields.items()}
            yield {"offset": ev.offset, "event": "command", "command": ev.name, "length": ev.length, **fields}
        elif t is DeviceState:
            yield {
                "offset": ev.offset,
                "event": "device",
                "section": section,
                "idstr": ev.idstr,
                "instance_id": ev.instance_id,
                "payload_size": ev.length,
                "framing": ev.framing,
            }
        elif t is Configuration:
            yield {
                "offset": ev.offset,
                "event": "configuration",
                "machine": ev.machine,
                "target_page_bits": ev.target_page_bits,
                "capabilities": list(ev.capabilities),
            }
        elif t is FileHeader:
            yield {"offset": ev.offset, "event": "header", "version": ev.version}
        elif t is PackageEnd:
            yield {"offset": ev.offset, "event": "package_end", "length": ev.length}
        elif t is EndOfStream:
            yield {"offset": ev.offset, "event": "eof"}
        elif t is VmDescription:
            yield {"offset": ev.offset, "event": "vmdescription", "payload_size": len(ev.json)}
        elif t is Undecoded:
            yield {"offset": ev.offset, "event": "undecoded", "reason": ev.reason}
        elif hasattr(ev, "row"):  # multifd and mapped-ram events describe themselves
            row = ev.row()
            row.setdefault("section", section)
            yield row


def _page_row(rec: PageRecord, section: str) -> dict:
    kind = rec.kind
    size = rec.payload_size
    row = {
        "offset": rec.offset,
        "event": "page",
        "section": section,
        "block": rec.block,
        "addr": rec.addr,
        "flags": rec.flags,
        "flag_names": flag_names(rec.flags),
        "encoding": ENCODING_NAMES[kind],
        "payload_size": size,
    }
    if kind == RamFlag.ZERO:
        row["fill"] = rec.fill
    return row


def _format_row(r: dict) -> str:
    ev = r["event"]
    head = f"0x{r['offset']:010x}  {r.get('section', '-'):<10}"
    if ev == "page":
        extra = f" fill=0x{r['fill']:02x}" if "fill" in r else ""
        return (
            f"{head}  {r['block']:<24} 0x{r['addr']:010x}  {r['flag_names']:<22} {page_kind_word(r['encoding']):<10} "
            f"{r['payload_size']}{extra}"
        )
    if ev == "ram":
        return f"{head}  {'':<24} {'':<12}  {r['flag_names']:<22} {r['encoding']:<10} 0"
    if ev == "section":
        return f"{head}  {r['type']} '{r['idstr']}' instance {r['instance_id']} version {r['version_id']}"
    if ev == "section_end":
        return f"{head}  end of section{' (footer)' if r['footer'] else ''}"
    if ev == "block":
        if r["device"] is not None:
            what = f"{r['device']} @ {r['disk_offset']:#x}" + (f", {r['data_size']} bytes" if r["data_size"] else "")
        elif r["progress"] is not None:
            what = f"{r['progress']}%"
        else:
            what = ""
        return f"{head}  BLOCK {r['flag_names']:<22} {what}"
    if ev == "dirty_bitmap":
        parts = []
        if r["node"] is not None or r["bitmap"] is not None:
            parts.append(f"{r['node'] or ''}/{r['bitmap'] or ''}")
        if r["granularity"] is not None:
            parts.append(f"granularity {r['granularity']} flags {r['bitmap_flags']:#x}")
        if r["start_sector"] is not None:
            parts.append(
                f"sectors {r['start_sector']}+{r['nr_sectors']}"
                + (f", {r['data_size']} bytes of bits" if r["data_size"] else "")
            )
        return f"{head}  DIRTY_BITMAP {r['flag_names']:<30} {' '.join(what)}"
    if ev == "mem_size":
        blocks = ", ".join(f"{b['name']}={b['length']:#x}" for b in r["blocks"])
        return f"{head}  MEM_SIZE total {r['total']:#x}: {blocks}"
    if ev == "command":
        rest = {k: v for k, v in r.items() if k not in ("offset", "event", "command", "length")}
        return f"{head}  COMMAND {r['command']} len {r['length']} {rest if rest else ''}".rstrip()
    if ev == "device":
        return f"{head}  device '{r['idstr']}' instance {r['instance_id']}: {r['payload_size']} bytes ({r['framing']})"
    rest = {k: v for k, v in r.items() if k not in ("offset", "event")}
    return f"{head}  {ev.upper()} {rest if rest else ''}".rstrip()


def _record_filter(words: str):
    """The --filter words as a RecordFilter (imported on use: the filter module
    brings numpy, which plain ``records`` does without)."""
    from ..tools.filtering import FilterError
    from ..tools.filtering import RecordFilter
    from ..tools.filtering import parse_words

    try:
        return RecordFilter(parse_words(words))
    except FilterError as exc:
        raise UsageError(f"--filter: {exc}") from None


FilterOpt = Annotated[
    str | None,
    typer.Option(
        "-f",
        "--filter",
        metavar="WORDS",
        help="Only records matching all words, as in the TUI: kinds (zero raw xbzrle eos multifd ...), "
        "block:NAME, iter:N, offset:A-B (e.g. 'zero block:pc.ram iter:1').",
        show_default=False,
    ),
]
CountOpt = Annotated[
    int | None,
    typer.Option(
        "-c", "--count", metavar="N", min=0, help="Stop after N lines (after the filter).", show_default=False
    ),
]


@app.command(rich_help_panel=INSPECT)
@reads_stream(progress=False)
def records(
    stream: StreamArg,
    inp: InputOptions,
    json_out: Annotated[bool, typer.Option("--json", help="JSON Lines, one object per record (docs/json.md).")] = False,
    filter_words: FilterOpt = None,
    count: CountOpt = None,
) -> None:
    """One line per record and event: offset, section, block, page offset, flags, encoding, payload size.

    --progress is off unless asked for (the records go to the terminal)."""

    def go():
        keep = _record_filter(filter_words) if filter_words else None
        with inp.open(stream) as (source, decoder, prog):
            out = sys.stdout
            written = 0
            try:
                for row in _record_rows(inp.events(source, decoder, prog)):
                    if written == count:
                        break
                    if keep is not None:
                        if row["event"] == "section":
                            keep.see_section(row["idstr"])
                        if not keep.keep(row):
                            continue
                    out.write((line(row) if json_out else _format_row(row)) + "\n")
                    written += 1
            finally:
                out.flush()
                warn_all(decoder)

    run_command(go, json_out=json_out, json_lines=True)
