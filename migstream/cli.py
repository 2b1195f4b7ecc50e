"""The ``migstream`` command.

Exit codes: 0 ok, 1 invalid stream, 2 usage (bad arguments, unreadable files).
Data goes to stdout; progress, warnings and errors to stderr.  A stream error is
one line ``error at offset 0x...: <what>``, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from .decoder import StreamDecoder, inflate_page
from .errors import MigstreamError, StreamError, UsageError
from .events import (
    CommandEvent,
    Configuration,
    DeviceState,
    EndOfStream,
    FileHeader,
    PackageEnd,
    PageRecord,
    PageRun,
    RamBlockList,
    RamMarker,
    SectionEnd,
    SectionStart,
    Undecoded,
    VmDescription,
    flag_names,
)
from .grammar import RamFlag
from .multifd import with_channels
from .sources import StreamSource, detect_compression
from .stream import iter_events, open_decoder
from .summary import ENCODING_NAMES, StreamSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Inspect, validate and extract QEMU live-migration streams.")

StreamArg = Annotated[str, typer.Argument(metavar="STREAM", help="Stream file, .gz/.xz/.zst file, or - for stdin.")]
PageSizeOpt = Annotated[Optional[int], typer.Option("--page-size", help="Target page size (overrides the stream).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr (default: when a terminal).")]
HookOpt = Annotated[bool, typer.Option("--rdma", help="Accept RDMA HOOK records.")]
ChannelOpt = Annotated[Optional[list[Path]], typer.Option(
    "--channel", help="A multifd channel capture (repeatable; any order; .gz/.xz/.zst ok).")]


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


class _SizeOnly:
    """What _Progress needs to know of a stream it does not open itself."""

    def __init__(self, path: str) -> None:
        import os

        try:
            with open(path, "rb") as f:
                compressed = detect_compression(f.read(6)) is not None
            self.size = None if compressed else os.path.getsize(path)
        except OSError:
            self.size = None


class StatusLine:
    """A throttled one-line status on stderr: shown on a terminal (or when asked),
    redrawn at most every 0.2 s, cleared at the end."""

    INTERVAL = 0.2

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0

    def due(self, force: bool = False) -> bool:
        """Whether to draw now (then the next one waits INTERVAL)."""
        if not self.enabled:
            return False
        now = time.monotonic()
        if not force and now - self._last < self.INTERVAL:
            return False
        self._last = now
        return True

    def show(self, text: str) -> None:
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class _Progress(StatusLine):
    """Bytes of the stream decoded so far (and the share of it, when its size is known)."""

    def __init__(self, source: StreamSource, enabled: bool | None) -> None:
        super().__init__(enabled)
        self.source = source
        self._start = time.monotonic()

    def __call__(self, consumed: int) -> None:
        if not self.due():
            return
        mib = consumed / (1 << 20)
        rate = mib / max(self._last - self._start, 1e-6)
        if self.source.size:
            pct = 100.0 * consumed / self.source.size
            self.show(f"{pct:5.1f}%  {mib:,.0f} MiB  {rate:,.0f} MiB/s ")
        else:
            self.show(f"{mib:,.0f} MiB  {rate:,.0f} MiB/s ")


@contextmanager
def _opened(stream: str, page_size: int | None, rdma: bool, progress: bool | None):
    source = StreamSource(stream)
    try:
        decoder = open_decoder(source, page_size=page_size, allow_hook=rdma)
        prog = _Progress(source, progress)
        try:
            yield source, decoder, prog
        finally:
            prog.done()
    finally:
        source.close()


def _warn_all(decoder: StreamDecoder) -> None:
    for off, msg in decoder.warnings:
        _err(f"warning at offset 0x{off:x}: {msg}")


def _run(fn, *, trouble: int | None = None):
    """Turn library errors into one line and an exit code.  ``trouble`` replaces
    every error code for commands whose 1 means something else (diff: cmp's 2)."""
    try:
        return fn()
    except StreamError as exc:
        _err(str(exc))
        raise typer.Exit(trouble or 1)
    except UsageError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(trouble or 2)
    except MigstreamError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(trouble or 1)
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0)
    except OSError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(trouble or 3)
    except KeyboardInterrupt:
        raise typer.Exit(130)


# --- info ------------------------------------------------------------------------


@app.command()
def info(stream: StreamArg, json_out: JsonOpt = False, page_size: PageSizeOpt = None,
         progress: ProgressOpt = None, rdma: HookOpt = False, channel: ChannelOpt = None) -> None:
    """What is in a stream: machine, page size, RAM blocks, sections, records by encoding."""

    def go():
        with _opened(stream, page_size, rdma, progress) as (source, decoder, prog):
            summary = StreamSummary()
            error = None
            stats: list = []
            try:
                for ev in with_channels(iter_events(source, decoder, prog), channel or source.channel_paths, decoder, stats):
                    summary.add(ev)
            except StreamError as exc:
                error = exc
            summary.page_size = decoder.page_size
            summary.page_size_source = decoder.page_size_source
            summary.end_offset = decoder.offset
            doc = summary.as_dict()
            doc["ram_complete"] = decoder.ram_complete
            if stats:
                doc["multifd_channels"] = stats
            doc["error"] = str(error) if error else None
            doc["warnings"] = [{"offset": o, "message": m} for o, m in decoder.warnings]
            if source.save_image is not None:
                doc["libvirt"] = source.save_image.as_dict()
            prog.done()
            if json_out:
                print(json.dumps(doc, indent=2))
            else:
                _print_info(doc)
            if error:
                if not json_out:
                    _err(str(error))
                raise typer.Exit(1)

    _run(go)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_info(d: dict) -> None:
    out = []
    lv = d.get("libvirt")
    if lv:
        dom = lv["domain"]
        mem = _human(dom["memory"]) if dom["memory"] is not None else "?"
        out.append(f"libvirt image    {'complete' if lv['complete'] else 'INCOMPLETE (LibvirtQemudPart)'}, "
                   f"format {lv['format']}, was running: {'yes' if lv['was_running'] else 'no'}")
        out.append(f"domain           {dom['name']}  uuid {dom['uuid']}  memory {mem}")
        out.append(f"QEMU stream at   file offset 0x{lv['stream_offset']:x} "
                   f"(offsets below are inside the {'decompressed ' if lv['format'] != 'raw' else ''}stream)")
    out.append(f"stream version   {d['version']}")
    out.append(f"machine          {d['machine'] or '(no configuration section)'}")
    out.append(f"page size        {d['page_size']} ({d['page_size_source']})")
    if d["capabilities"]:
        out.append(f"capabilities     {', '.join(d['capabilities'])}")
    if d["uuid"]:
        out.append(f"uuid             {d['uuid']}")
    out.append(f"RAM blocks       {len(d['ram_blocks'])}")
    for b in d["ram_blocks"]:
        extra = ""
        if "addr" in b:
            extra += f"  addr 0x{b['addr']:x}"
        if "page_size" in b:
            extra += f"  page size {b['page_size']}"
        sent = d["pages_by_block"].get(b["name"], {})
        sent_s = ", ".join(f"{k} {v}" for k, v in sent.items()) or "no pages"
        out.append(f"  {b['name']:<28} {_human(b['length']):>10}  ({sent_s}){extra}")
    out.append("sections         " + ", ".join(f"{k} {v}" for k, v in d["sections"].items()))
    out.append(f"RAM iterations   {d['ram_iterations']} PART sections")
    out.append("RAM records")
    for name, v in d["records"].items():
        out.append(f"  {name:<12} {v['count']:>10}  {_human(v['bytes']):>10}")
    for name, n in d["markers"].items():
        out.append(f"  {name:<12} {n:>10}")
    if d["commands"]:
        out.append("commands         " + ", ".join(f"{k} {v}" for k, v in d["commands"].items()))
    for c in d.get("multifd_channels", ()):
        out.append(f"multifd channel  {c['id']}: {c['packets']} packets ({c['sync_packets']} SYNC), "
                   f"{c['normal_pages']} pages, {c['zero_pages']} zero pages, {c['compression']}  {c['file']}")
    for name, c in d.get("block_devices", {}).items():
        out.append(f"block migration  {name}: {c['chunks']} chunks of 1 MiB ({c['zero_chunks']} zero), "
                   f"{_human(c['bytes'])} of data, up to {_human(c['extent'])}")
    for name, c in d.get("dirty_bitmaps", {}).items():
        out.append(f"dirty bitmap     {name}: granularity {c['granularity']}, {c['ranges']} ranges "
                   f"({c['zero_ranges']} zero), {_human(c['bytes'])} of bits")
    out.append(f"device sections  {d['device_sections']}")
    out.append(f"vmdescription    {'yes' if d['has_vmdescription'] else 'no'}")
    if d["undecoded"]:
        out.append(f"note             {d['undecoded']}")
    out.append(f"RAM complete     {'yes' if d['ram_complete'] else 'no'}")
    for w in d["warnings"]:
        out.append(f"warning at offset 0x{w['offset']:x}: {w['message']}")
    print("\n".join(out))


# --- records ---------------------------------------------------------------------


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
            yield {"offset": ev.offset, "event": "section", "section": section, "type": ev.type.name,
                   "idstr": ev.idstr, "instance_id": ev.instance_id, "version_id": ev.version_id}
        elif t is SectionEnd:
            yield {"offset": ev.offset, "event": "section_end", "section": section, "footer": ev.footer}
        elif t is RamMarker:
            yield {"offset": ev.offset, "event": "ram", "section": section, "flags": ev.flags,
                   "flag_names": flag_names(ev.flags), "encoding": ev.kind.name.lower(), "payload_size": 0}
        elif t is RamBlockList:
            yield {"offset": ev.offset, "event": "mem_size", "section": section, "total": ev.total,
                   "blocks": [{"name": b.name, "length": b.used_length} for b in ev.blocks]}
        elif t is CommandEvent:
            fields = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in ev.fields.items()}
            yield {"offset": ev.offset, "event": "command", "command": ev.name, "length": ev.length, **fields}
        elif t is DeviceState:
            yield {"offset": ev.offset, "event": "device", "section": section, "idstr": ev.idstr,
                   "instance_id": ev.instance_id, "payload_size": ev.length, "framing": ev.framing}
        elif t is Configuration:
            yield {"offset": ev.offset, "event": "configuration", "machine": ev.machine,
                   "target_page_bits": ev.target_page_bits, "capabilities": list(ev.capabilities)}
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
    row = {"offset": rec.offset, "event": "page", "section": section, "block": rec.block, "addr": rec.addr,
           "flags": rec.flags, "flag_names": flag_names(rec.flags), "encoding": ENCODING_NAMES[kind],
           "payload_size": size}
    if kind == RamFlag.ZERO:
        row["fill"] = rec.fill
    return row


def _format_row(r: dict) -> str:
    ev = r["event"]
    head = f"0x{r['offset']:010x}  {r.get('section', '-'):<10}"
    if ev == "page":
        extra = f" fill=0x{r['fill']:02x}" if "fill" in r else ""
        return (f"{head}  {r['block']:<24} 0x{r['addr']:010x}  {r['flag_names']:<22} {r['encoding']:<10} "
                f"{r['payload_size']}{extra}")
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
        what = []
        if r["node"] is not None or r["bitmap"] is not None:
            what.append(f"{r['node'] or ''}/{r['bitmap'] or ''}")
        if r["granularity"] is not None:
            what.append(f"granularity {r['granularity']} flags {r['bitmap_flags']:#x}")
        if r["start_sector"] is not None:
            what.append(f"sectors {r['start_sector']}+{r['nr_sectors']}"
                        + (f", {r['data_size']} bytes of bits" if r["data_size"] else ""))
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


@app.command()
def records(stream: StreamArg, json_out: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
            page_size: PageSizeOpt = None, progress: ProgressOpt = False, rdma: HookOpt = False,
            channel: ChannelOpt = None) -> None:
    """One line per record and event: offset, section, block, page offset, flags, encoding, payload size."""

    def go():
        with _opened(stream, page_size, rdma, progress) as (source, decoder, prog):
            out = sys.stdout
            try:
                for row in _record_rows(with_channels(iter_events(source, decoder, prog), channel or source.channel_paths, decoder)):
                    out.write((json.dumps(row) if json_out else _format_row(row)) + "\n")
            finally:
                out.flush()
                _warn_all(decoder)

    _run(go)


# --- extract ---------------------------------------------------------------------


@app.command()
def extract(stream: StreamArg,
            output: Annotated[Path, typer.Option("-o", "--output", help="Directory for block files + manifest.json.")],
            block: Annotated[Optional[list[str]], typer.Option("--block", help="Only this RAM block (repeatable).")] = None,
            page_size: PageSizeOpt = None, progress: ProgressOpt = None, rdma: HookOpt = False,
            json_out: JsonOpt = False, channel: ChannelOpt = None) -> None:
    """Rebuild every RAM block as a sparse file in DIR, plus DIR/manifest.json."""

    def go():
        prog = None
        if progress is not False:
            # The source is opened inside extract(); report by bytes consumed.
            prog = _Progress(_SizeOnly(stream), progress)
        from .extract import extract as do_extract  # numpy and the RAM image: extract only

        result = do_extract(stream, str(output), blocks=set(block) if block else None, page_size=page_size,
                            allow_hook=rdma, progress=prog, channels=[str(c) for c in channel or ()])
        if prog:
            prog.done()
        for off, msg in result.warnings:
            _err(f"warning at offset 0x{off:x}: {msg}")
        if json_out:
            print(json.dumps(result.manifest, indent=2))
        if result.error:
            _err(str(result.error))
            _err(f"kept what was decoded before the error in {output} (manifest says complete: false)")
            raise typer.Exit(1)
        if not result.manifest["complete"]:
            _err("warning: the stream has no RAM END section; memory may be incomplete")

    _run(go)


# --- validate --------------------------------------------------------------------


@app.command()
def validate(stream: StreamArg, page_size: PageSizeOpt = None, progress: ProgressOpt = None,
             rdma: HookOpt = False, quiet: Annotated[bool, typer.Option("-q", "--quiet")] = False,
             channel: ChannelOpt = None) -> None:
    """Exit 0 if QEMU's loader would accept the stream, else 1 with the offset of the fault."""

    def go():
        with _opened(stream, page_size, rdma, progress) as (source, decoder, prog):
            eof = False
            undecoded = None
            for ev in with_channels(iter_events(source, decoder, prog), channel or source.channel_paths, decoder):
                t = type(ev)
                if t is PageRecord and ev.kind == RamFlag.COMPRESS_PAGE:
                    try:
                        inflate_page(ev.data, decoder.page_size)
                    except Exception as exc:
                        raise StreamError(f"decompress data failed: {exc}", ev.offset, section="ram",
                                          block=ev.block, addr=ev.addr)
                elif t is EndOfStream:
                    eof = True
                elif t is Undecoded:
                    undecoded = ev.reason
            prog.done()
            _warn_all(decoder)
            if source.save_image is not None and not source.save_image.complete:
                raise MigstreamError("libvirt save image is incomplete (magic LibvirtQemudPart: the save "
                                     "never finished; libvirt refuses to restore it)")
            if not eof and undecoded is None:
                raise StreamError("stream ends before QEMU_VM_EOF", decoder.offset)
            if not quiet:
                note = f" (RAM checked; {undecoded})" if undecoded else ""
                print(f"ok: {decoder.offset} bytes, valid{note}")

    _run(go)


# Commands that live in their own modules (cli_<name>.py) register themselves on `app`
# when imported; one line each, so that adding a command never touches the others.
from . import cli_plugins  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    # Run as `python -m migstream.cli`: plugin commands register on the app of the
    # module `migstream.cli`, not on this `__main__` copy, so start from there.
    from migstream.cli import main as _main

    _main()
