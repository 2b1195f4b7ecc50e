"""``migstream info``: what is in a stream (machine, page size, RAM blocks, sections,
records by encoding)."""

from __future__ import annotations

import json

import typer

from ..containers.multifd import with_channels
from ..containers.stream import iter_events
from ..errors import StreamError
from ..tools.summary import StreamSummary
from ..tools.vocabulary import human_size
from ..tools.vocabulary import page_kind_word
from .app import ChannelOpt
from .app import HookOpt
from .app import JsonOpt
from .app import PageSizeOpt
from .app import ProgressOpt
from .app import SnapshotOpt
from .app import StreamArg
from .app import app
from .app import err
from .app import opened_stream
from .app import run_command


@app.command()
def info(
    stream: StreamArg,
    json_out: JsonOpt = False,
    page_size: PageSizeOpt = None,
    progress: ProgressOpt = None,
    rdma: HookOpt = False,
    channel: ChannelOpt = None,
    snapshot: SnapshotOpt = None,
) -> None:
    """What is in a stream: machine, page size, RAM blocks, sections, records by encoding."""

    def go():
        with opened_stream(stream, page_size, rdma, progress, snapshot) as (source, decoder, prog):
            summary = StreamSummary()
            error = None
            stats: list = []
            try:
                for ev in with_channels(
                    iter_events(source, decoder, prog), channel or source.channel_paths, decoder, stats
                ):
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
            if decoder.trailing is not None:
                start, length, nonzero = decoder.trailing
                doc["after_stream"] = {"offset": start, "length": length, "first_nonzero": nonzero}
            if source.qcow2 is not None and source.snapshot is not None:
                doc["qcow2"] = source.qcow2.describe(source.snapshot)
            prog.done()
            if json_out:
                print(json.dumps(doc, indent=2))
            else:
                _print_info(doc)
            if error:
                if not json_out:
                    err(str(error))
                raise typer.Exit(1)

    run_command(go)


def _print_info(d: dict) -> None:
    out = []
    lv = d.get("libvirt")
    if lv:
        dom = lv["domain"]
        mem = human_size(dom["memory"]) if dom["memory"] is not None else "?"
        out.append(
            f"libvirt image    {'complete' if lv['complete'] else 'INCOMPLETE (LibvirtQemudPart)'}, "
            f"format {lv['format']}, was running: {'yes' if lv['was_running'] else 'no'}"
        )
        out.append(f"domain           {dom['name']}  uuid {dom['uuid']}  memory {mem}")
        out.append(
            f"QEMU stream at   file offset 0x{lv['stream_offset']:x} "
            f"(offsets below are inside the {'decompressed ' if lv['format'] != 'raw' else ''}stream)"
        )
    q = d.get("qcow2")
    if q:
        s = q["snapshot"]
        out.append(
            f"qcow2 snapshot   {s['id']} {s['name']!r} ({s['date']} UTC), VM state {s['vm_state_size']} bytes "
            f"at virtual offset 0x{q['vm_state_offset']:x} (offsets below are inside the state)"
        )
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
        sent_s = ", ".join(f"{page_kind_word(k)} {v}" for k, v in sent.items()) or "no pages"
        out.append(f"  {b['name']:<28} {human_size(b['length']):>10}  ({sent_s}){extra}")
    out.append("sections         " + ", ".join(f"{k} {v}" for k, v in d["sections"].items()))
    out.append(f"RAM iterations   {d['ram_iterations']} PART sections")
    out.append("RAM records")
    for name, v in d["records"].items():
        out.append(f"  {page_kind_word(name):<12} {v['count']:>10}  {human_size(v['bytes']):>10}")
    for name, n in d["markers"].items():
        out.append(f"  {name:<12} {n:>10}")
    if d["commands"]:
        out.append("commands         " + ", ".join(f"{k} {v}" for k, v in d["commands"].items()))
    for c in d.get("multifd_channels", ()):
        out.append(
            f"multifd channel  {c['id']}: {c['packets']} packets ({c['sync_packets']} SYNC), "
            f"{c['normal_pages']} pages, {c['zero_pages']} zero pages, {c['compression']}  {c['file']}"
        )
    for name, c in d.get("block_devices", {}).items():
        out.append(
            f"block migration  {name}: {c['chunks']} chunks of 1 MiB ({c['zero_chunks']} zero), "
            f"{human_size(c['bytes'])} of data, up to {human_size(c['extent'])}"
        )
    for name, c in d.get("dirty_bitmaps", {}).items():
        out.append(
            f"dirty bitmap     {name}: granularity {c['granularity']}, {c['ranges']} ranges "
            f"({c['zero_ranges']} zero), {human_size(c['bytes'])} of bits"
        )
    out.append(f"device sections  {d['device_sections']}")
    for dev in d["devices"]:
        if dev["idstr"] == "pbs-state":  # Proxmox VE only (pve-qemu)
            out.append(
                f"pbs-state        at 0x{dev['offset']:x}, {dev['length'] - 8} bytes of Proxmox Backup Server state"
            )
    out.append(f"vmdescription    {'yes' if d['has_vmdescription'] else 'no'}")
    if d["undecoded"]:
        out.append(f"note             {d['undecoded']}")
    out.append(f"RAM complete     {'yes' if d['ram_complete'] else 'no'}")
    after = d.get("after_stream")
    if after:
        what = "all zero" if after["first_nonzero"] is None else f"stale bytes from 0x{after['first_nonzero']:x}"
        out.append(
            f"after the stream {human_size(after['length'])} ({after['length']} bytes) from 0x{after['offset']:x} "
            f"to the end of the input, {what} (e.g. a Proxmox state volume)"
        )
    for w in d["warnings"]:
        out.append(f"warning at offset 0x{w['offset']:x}: {w['message']}")
    print("\n".join(out))
