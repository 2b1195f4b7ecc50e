"""A plain construct decoder: the grammar applied element by element, no fast
path, no batching.  The differential tests hold StreamDecoder equal to it."""

from __future__ import annotations

import io

from migstream.wire import grammar as g

ST = g.SectionType


_TOP_TYPES = {ST.EOF, ST.START, ST.PART, ST.END, ST.FULL, ST.COMMAND}


def _device_payload_size(data: bytes, start: int, section_id: int) -> int | None:
    """Bytes before the section's footer: 0x7e + be32 id followed by a byte that can
    start the next element (or the end of the data).  Device sections are opaque
    without the JSON description; this is the framing rule the decoder uses."""
    needle = bytes([ST.FOOTER]) + section_id.to_bytes(4, "big")
    at = data.find(needle, start)
    while at >= 0:
        if at + 5 >= len(data) or data[at + 5] in _TOP_TYPES:
            return at - start
        at = data.find(needle, at + 1)
    return None


def reference_records(data: bytes, page_size: int = 4096, *, ignore_shared: bool = False, mapped_ram: bool = False):
    """(offset, flags, block, addr, payload-bytes-or-fill) for every RAM record,
    plus ('section', type, id), ('command', cmd, length), ('device', payload
    offset, id, size), ('package_end', end), ('vmdescription', json) items, in order.
    ``ignore_shared`` / ``mapped_ram``: the capabilities that change MEM_SIZE."""
    f = io.BytesIO(data)
    g.FileHeader.parse_stream(f)
    out = []
    state = {"sections": {}, "last_block": None, "ignore_shared": ignore_shared, "mapped_ram": mapped_ram}
    if _elements(f, data, out, state, page_size, end=None):
        return out
    if f.read(1) == bytes([ST.VMDESCRIPTION]):
        f.seek(f.tell() - 1)
        off = f.tell()
        f.read(1)
        out.append(("vmdescription", off, bytes(g.VmDescription.parse_stream(f).json)))
    return out


def _elements(f, data, out, state, page_size, end):
    """Parse elements up to EOF (or ``end`` inside a package); True when decoding
    stopped at a device section that cannot be framed."""
    sections = state["sections"]
    while end is None or f.tell() < end:
        off = f.tell()
        typ = f.read(1)[0]
        if typ == ST.EOF:
            if end is None:
                out.append(("eof", off))
            else:
                f.seek(end)  # the loader ignores the rest of a package after its EOF
            return False
        if typ == ST.CONFIGURATION:
            cfg = g.Configuration.parse_stream(f)
            out.append(("configuration", off, cfg.machine))
            continue
        if typ == ST.COMMAND:
            c = g.CommandElement.parse_stream(f)
            out.append(("command", off, c.cmd, c.length))
            if c.cmd == g.Command.PACKAGED:
                pkg_end = f.tell() + c.payload.body.length
                if _elements(f, data, out, state, page_size, pkg_end):
                    return True
                assert f.tell() == pkg_end, "element runs past the end of the package"
                out.append(("package_end", pkg_end))
            continue
        if typ in (ST.START, ST.FULL):
            h = g.SectionStartHeader.parse_stream(f)
            sections[h.section_id] = (h.idstr, h.instance_id, typ)
        elif typ in (ST.PART, ST.END):
            h = g.SectionPartHeader.parse_stream(f)
        else:
            raise ValueError(f"type {typ} at {off}")
        out.append(("section", off, typ, h.section_id))
        idstr, instance_id, first_typ = sections[h.section_id]
        if idstr == "ram" and instance_id == 0 and first_typ == ST.START:
            _ram_payload(f, out, state, page_size)
        elif idstr == g.DIRTY_BITMAP_SECTION and first_typ == ST.START:
            while True:
                roff = f.tell()
                rec = g.DirtyBitmapRecord.parse_stream(f)
                bits = rec.bits
                out.append(
                    (
                        "dirty_bitmap",
                        roff,
                        rec.flags,
                        rec.node,
                        rec.bitmap,
                        rec.start.granularity if rec.start else None,
                        bits.start_sector if bits else None,
                        bytes(rec.data or b""),
                    )
                )
                if rec.flags & g.DirtyBitmapFlag.EOS:
                    break
        elif idstr == g.BLOCK_SECTION and first_typ == ST.START:
            while True:
                roff = f.tell()
                rec = g.BlockRecord.parse_stream(f)
                out.append(("block", roff, rec.flags, rec.value, rec.device, bytes(rec.data or b"")))
                if rec.flags & g.BlockFlag.EOS:
                    break
        else:
            start = f.tell()
            size = _device_payload_size(data, start, h.section_id)
            if size is None:
                out.append(("undecoded", start))
                return True
            out.append(("device", start, h.section_id, size))
            f.seek(start + size)
        if f.read(1) == bytes([ST.FOOTER]):
            g.SectionFooter.parse_stream(f)
        else:
            f.seek(f.tell() - 1)
    return False


def _ram_payload(f, out, state, page_size):
    params = {"page_size": page_size, "ignore_shared": state["ignore_shared"], "postcopy_hugepages": False}
    while True:
        roff = f.tell()
        if state["mapped_ram"]:
            hdr = g.RamRecordHeader.parse_stream(f, **params)
            if hdr.kind == g.RamFlag.MEM_SIZE:
                out.append(("mem_size", roff, _mapped_ram_blocks(f, hdr.addr, params)))
                continue
            f.seek(roff)
        rec = g.RamRecord.parse_stream(f, **params)
        hdr = rec.header
        if hdr.kind in g.PAGE_KINDS:
            if hdr.idstr is not None:
                state["last_block"] = hdr.idstr
            p = rec.payload
            value = p.fill if hdr.kind == g.RamFlag.ZERO else bytes(p.data)
            out.append((roff, hdr.flags, state["last_block"], hdr.addr, value))
        elif hdr.kind == g.RamFlag.MEM_SIZE:
            out.append(("mem_size", roff, tuple((b.idstr, b.used_length) for b in rec.payload.blocks or ())))
        else:
            out.append(("marker", roff, hdr.flags))
        if hdr.kind == g.RamFlag.EOS:
            return


def _mapped_ram_blocks(f, total: int, params: dict) -> tuple:
    """MEM_SIZE entries under mapped-ram: each followed by its MappedRamHeader, then
    the writer's seek past the block's page region."""
    blocks = []
    while total > 0:
        e = g.MappedRamBlockEntry.parse_stream(f, **params)
        blocks.append((e.idstr, e.used_length))
        total -= e.used_length
        if e.mapped_ram.pages_offset:
            f.seek(e.mapped_ram.pages_offset + e.used_length)
    return tuple(blocks)


def decoder_records(data: bytes, chunks=None, page_size=None):
    """The same list from StreamDecoder (runs expanded), fed in ``chunks``."""
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import NEED_DATA
    from migstream.events import BlockRecord
    from migstream.events import CommandEvent
    from migstream.events import Configuration
    from migstream.events import DeviceState
    from migstream.events import DirtyBitmapRecord
    from migstream.events import EndOfStream
    from migstream.events import PackageEnd
    from migstream.events import PageRecord
    from migstream.events import PageRun
    from migstream.events import RamBlockList
    from migstream.events import RamMarker
    from migstream.events import SectionStart
    from migstream.events import Undecoded
    from migstream.events import VmDescription

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
        elif t is BlockRecord:
            out.append(("block", ev.offset, ev.flags, ev.value, ev.device, bytes(ev.data)))
        elif t is DirtyBitmapRecord:
            out.append(
                (
                    "dirty_bitmap",
                    ev.offset,
                    ev.flags,
                    ev.node,
                    ev.bitmap,
                    ev.granularity,
                    ev.start_sector,
                    bytes(ev.data),
                )
            )
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
        elif t is DeviceState:
            out.append(("device", ev.offset, ev.section_id, ev.length))
        elif t is PackageEnd:
            out.append(("package_end", ev.offset))
        elif t is VmDescription:
            out.append(("vmdescription", ev.offset, bytes(ev.json)))
        elif t is Undecoded:
            out.append(("undecoded", ev.offset))

    for c in chunks if chunks is not None else [data]:
        dec.feed(c)
        while (ev := dec.next_event()) is not NEED_DATA and ev is not None:
            take(ev)
    dec.feed(b"")
    while (ev := dec.next_event()) is not None:
        take(ev)
    return out
