"""Walk a real capture keeping every RAM page's content as the destination sees it,
so each delta or compressed record can be paired with the page before and after it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from migstream.codecs.xbzrle import xbzrle_decode_into
from migstream.decode.decoder import StreamDecoder
from migstream.events import PageRecord
from migstream.events import PageRun
from migstream.events import RamBlockList
from migstream.events import SectionStart
from migstream.wire.grammar import RamFlag
from migstream.wire.grammar import SectionType
from support.samples import raw_stream
from support.samples import sample_by_name


@dataclass(frozen=True)
class PageChange:
    record: PageRecord
    before: bytes  # the destination's page before the record
    after: bytes  # and after applying it
    section_type: SectionType  # of the section carrying the record (END = last stage)


def page_changes(sample_name: str, kinds: set[int]):
    """Yield a PageChange for every record of one of ``kinds`` in the sample."""
    dec = StreamDecoder()
    dec.feed(raw_stream(sample_by_name(sample_name)))
    dec.feed(b"")
    memory: dict[str, bytearray] = {}
    section_type = None
    for ev in dec:
        if isinstance(ev, SectionStart):
            section_type = ev.type
        elif isinstance(ev, RamBlockList):
            memory = {b.name: bytearray(b.used_length) for b in ev.blocks}
        elif isinstance(ev, (PageRecord, PageRun)):
            ps = dec.page_size
            for rec in ev.records() if isinstance(ev, PageRun) else (ev,):
                page = memoryview(memory[rec.block])[rec.addr : rec.addr + ps]
                before = bytes(page)
                kind = rec.flags & ~RamFlag.CONTINUE
                if kind == RamFlag.PAGE:
                    page[:] = rec.data
                elif kind == RamFlag.ZERO:
                    page[:] = bytes([rec.fill]) * ps
                elif kind == RamFlag.XBZRLE:
                    xbzrle_decode_into(rec.data, page)
                elif kind == RamFlag.COMPRESS_PAGE:
                    page[:] = zlib.decompress(rec.data)
                if kind in kinds:
                    yield PageChange(rec, before, bytes(page), section_type)
