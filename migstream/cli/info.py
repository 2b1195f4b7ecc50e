"""``migstream info``: what is in a stream (machine, page size, RAM blocks, sections,
records by encoding)."""

from __future__ import annotations

import typer

from ..containers.pcap import AmbiguousCapture
from ..tools.coverage import incomplete_ram
from ..tools.summary import info_document
from ..tools.vocabulary import human_size
from ..tools.vocabulary import page_kind_word
from .dump import physical_map_lines
from .jsonout import print_json
from .pcapinfo import capture_lines
from .pcapinfo import print_capture
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
def info(stream: StreamArg, inp: InputOptions, json_out: JsonOpt = False) -> None:
    """What is in a stream: machine, page size, RAM blocks, sections, records by encoding."""

    def go():
        try:
            decode()
        except AmbiguousCapture as exc:  # a packet capture holding several migrations: list them
            print_capture(exc.capture.describe(), json_out)

    def decode():
        with inp.open(stream) as (source, decoder, prog):
            doc, error = info_document(source, decoder, inp.channels_of(source), prog)
            needs_channels = doc["multifd_main_alone"] and not inp.channels_of(source)
            incomplete = incomplete_ram(doc["pages_never_sent"], needs_channels)
            prog.done()
            if json_out:
                print_json(doc)
            else:
                _print_info(doc)
                if incomplete:
                    err(f"warning: {incomplete}")
            if error:
                if not json_out:
                    err(str(error))
                raise typer.Exit(1)

    run_command(go, json_out=json_out)


def _print_info(d: dict) -> None:
    out = capture_lines(d["capture"]) if d.get("capture") else []
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
    out.extend(physical_map_lines(d["physical_map"]))
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
    never = d["pages_never_sent"]
    note = f" ({sum(never.values())} pages never sent)" if never else ""
    out.append(f"RAM complete     {'yes' if d['ram_complete'] else 'no'}{note}")
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
