"""A plain construct decoder: the grammar applied element by element, no fast
path, no batching.  The differential tests hold StreamDecoder equal to it."""

from __future__ import annotations

import io

from migstream import grammar as g

ST = g.SectionType


def reference_records(data: bytes, page_size: int = 4096, stop_at_device: bool = False):
    """(offset, flags, block, addr, payload-bytes-or-fill) for every RAM record,
    plus ('section', type, id) and ('command', cmd, length) items, in order.
    With ``stop_at_device`` the list ends at the first device (FULL) section."""
    f = io.BytesIO(data)
    g.FileHeader.parse_stream(f)
    out = []
    sections = {}
    last_block = None
    while True:
        off = f.tell()
        typ = f.read(1)[0]
        if typ == ST.EOF:
            out.append(("eof", off))
            return out
        if typ == ST.CONFIGURATION:
            cfg = g.Configuration.parse_stream(f)
            out.append(("configuration", off, cfg.machine))
            continue
        if typ == ST.COMMAND:
            c = g.CommandElement.parse_stream(f)
            out.append(("command", off, c.cmd, c.length))
            continue
        if typ == ST.FULL and stop_at_device:
            return out
        if typ in (ST.START, ST.FULL):
            h = g.SectionStartHeader.parse_stream(f)
            sections[h.section_id] = h.idstr
        elif typ in (ST.PART, ST.END):
            h = g.SectionPartHeader.parse_stream(f)
        else:
            raise ValueError(f"type {typ} at {off}")
        out.append(("section", off, typ, h.section_id))
        assert sections[h.section_id] == "ram"
        while True:
            roff = f.tell()
            rec = g.RamRecord.parse_stream(f, page_size=page_size, ignore_shared=False, postcopy_hugepages=False)
            hdr = rec.header
            if hdr.kind in g.PAGE_KINDS:
                if hdr.idstr is not None:
                    last_block = hdr.idstr
                p = rec.payload
                value = p.fill if hdr.kind == g.RamFlag.ZERO else bytes(p.data)
                out.append((roff, hdr.flags, last_block, hdr.addr, value))
            elif hdr.kind == g.RamFlag.MEM_SIZE:
                out.append(("mem_size", roff, tuple((b.idstr, b.used_length) for b in rec.payload.blocks or ())))
            else:
                out.append(("marker", roff, hdr.flags))
            if hdr.kind == g.RamFlag.EOS:
                break
        if f.read(1) == bytes([ST.FOOTER]):
            g.SectionFooter.parse_stream(f)
        else:
            f.seek(f.tell() - 1)


def decoder_records(data: bytes, chunks=None, page_size=None):
    """The same list from StreamDecoder (runs expanded), fed in ``chunks``."""
    from migstream.decoder import StreamDecoder
    from migstream.events import (NEED_DATA, CommandEvent, Configuration, EndOfStream, PageRecord, PageRun,
                                  RamBlockList, RamMarker, SectionStart)

    dec = StreamDecoder(page_size=page_size)
    out = []

    def take(ev):
        t = type(ev)
        if t is PageRun:
            for r in ev.records():
                take(r)
        elif t is PageRecord:
            value = ev.fill if ev.kind == g.RamFlag.ZERO else bytes(ev.data)
            out.append((ev.offset, ev.flags, ev.block, ev.addr, value))
        elif t is RamMarker:
            out.append(("marker", ev.offset, ev.flags))
        elif t is RamBlockList:
            out.append(("mem_size", ev.offset, tuple((b.name, b.used_length) for b in ev.blocks)))
        elif t is SectionStart:
            out.append(("section", ev.offset, int(ev.type), ev.section_id))
        elif t is CommandEvent:
            out.append(("command", ev.offset, ev.cmd, ev.length))
        elif t is Configuration:
            out.append(("configuration", ev.offset, ev.machine))
        elif t is EndOfStream:
            out.append(("eof", ev.offset))

    for c in (chunks if chunks is not None else [data]):
        dec.feed(c)
        while (ev := dec.next_event()) is not NEED_DATA and ev is not None:
            take(ev)
    dec.feed(b"")
    while (ev := dec.next_event()) is not None:
        take(ev)
    return out
