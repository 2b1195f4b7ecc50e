"""A self-contained HTML report of a stream: summary, per-iteration charts, a
page map image per RAM block, device sections and validation errors.

No external assets: charts are inline SVG, page maps are PNG data URIs written
by ``png_indexed`` (palette PNG, zlib only).
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import numpy as np

from ..containers.multifd import with_channels
from ..containers.sources import StreamSource
from ..containers.stream import iter_events
from ..containers.stream import open_decoder
from ..errors import StreamError
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlockList
from ..events import SectionStart
from .coverage import PageCoverage
from .coverage import incomplete_ram
from .coverage import multifd_main_alone
from .index.pagestate import BlockMap
from .index.pagestate import PageMaps
from .summary import StreamSummary
from .vocabulary import PAGE_KINDS
from .vocabulary import PageKind
from .vocabulary import human_size
from .vocabulary import page_kind_rgb
from .vocabulary import page_kind_word

#: The page maps' palette: one colour per PageKind, in order (tools/vocabulary.py).
PALETTE = tuple(page_kind_rgb(k) for k in PageKind)
_KIND_OF_KEY = {w.key: k for k, w in PAGE_KINDS.items()}


@dataclass
class ReportData:
    path: str
    summary: dict
    maps: PageMaps | None
    error: str | None
    warnings: list[str] = field(default_factory=list)
    incomplete: str | None = None  # pages never sent (tools/coverage.py)


def collect(
    path: str,
    *,
    page_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    allow_hook: bool = False,
    channels: list[str] | None = None,
) -> ReportData:
    """Decode the stream once (with its multifd ``channels`` files, or a capture
    directory's own); a stream error is kept, not raised.  A file that is not a
    stream at all raises StreamError before anything is collected."""
    summary = StreamSummary()
    maps = None
    early: list[SectionStart] = []  # RAM section headers seen before the page size was known
    error = None
    with StreamSource(path) as source:
        decoder = open_decoder(source, page_size=page_size, allow_hook=allow_hook)
        coverage = PageCoverage(decoder)
        channels = channels or source.channel_paths
        try:
            for ev in with_channels(iter_events(source, decoder, progress), channels, decoder):
                summary.add(ev)
                coverage.add(ev)
                if maps is None:
                    if isinstance(ev, (RamBlockList, PageRecord, PageRun)):
                        maps = PageMaps(decoder.page_size or 4096)  # known by MEM_SIZE or the first page
                        for e in early:
                            maps.add(e)
                    elif isinstance(ev, SectionStart):
                        early.append(ev)
                if maps is not None:
                    maps.add(ev)
        except StreamError as exc:
            error = str(exc)
        summary.page_size = decoder.page_size
        summary.page_size_source = decoder.page_size_source
        summary.end_offset = decoder.offset
        warnings = [f"offset 0x{off:x}: {msg}" for off, msg in decoder.warnings]
        missing = coverage.missing()
        needs_channels = multifd_main_alone(coverage, missing) and not channels
        incomplete = incomplete_ram(missing, needs_channels) if error is None else None
    return ReportData(path, summary.as_dict(), maps, error, warnings, incomplete)


# --- PNG ---------------------------------------------------------------------------


def png_indexed(cells: np.ndarray, width: int, palette=PALETTE) -> bytes:
    """A palette PNG, ``width`` cells per row, one pixel per cell."""
    rows = -(-len(cells) // width)
    img = np.zeros(rows * width, np.uint8)
    img[: len(cells)] = cells
    if len(cells) < rows * width:
        img[len(cells) :] = len(palette)  # past the block's end: transparent
    raw = np.zeros((rows, width + 1), np.uint8)  # filter byte 0 per row
    raw[:, 1:] = img.reshape(rows, width)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    plte = b"".join(bytes(c) for c in palette) + b"\xff\xff\xff"
    trns = b"\xff" * len(palette) + b"\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, rows, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", plte)
        + chunk(b"tRNS", trns)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _map_width(cells: int) -> int:
    return 512 if cells > 64 * 1024 else 256 if cells > 4096 else 64


# --- HTML --------------------------------------------------------------------------


def _colour(kind: PageKind) -> str:
    return PAGE_KINDS[kind].colour


def _bars(iterations, key: str, title: str, unit: Callable[[int], str]) -> str:
    """Stacked bars, one per RAM section, by encoding."""
    kinds = [k for k in PageKind if k != PageKind.NEVER and any(getattr(it, key).get(k) for it in iterations)]
    if not iterations or not kinds:
        return f"<p class='muted'>{html.escape(title)}: nothing sent.</p>"
    totals = [sum(getattr(it, key).values()) for it in iterations]
    top = max(totals) or 1
    bw, gap, h = 28, 6, 160
    w = len(iterations) * (bw + gap) + 60
    out = [
        f"<figure><figcaption>{html.escape(title)}</figcaption>",
        f"<svg width='{w}' height='{h + 40}' role='img' aria-label='{html.escape(title)}'>",
    ]
    out.append(f"<text x='0' y='12' class='axis'>{html.escape(unit(top))}</text>")
    for i, it in enumerate(iterations):
        x = 50 + i * (bw + gap)
        y = h + 10
        for k in kinds:
            v = getattr(it, key).get(k, 0)
            if not v:
                continue
            bh = max(1.0, v / top * h)
            y -= bh
            out.append(
                f"<rect x='{x}' y='{y:.1f}' width='{bw}' height='{bh:.1f}' fill='{_colour(k)}'>"
                f"<title>{it.kind} {i}: {v:,} {PAGE_KINDS[k].word} ({html.escape(unit(v))})</title></rect>"
            )
        label = "S" if it.kind == "START" else "E" if it.kind == "END" else str(i)
        out.append(f"<text x='{x + bw / 2}' y='{h + 28}' class='axis' text-anchor='middle'>{label}</text>")
    out.append("</svg></figure>")
    return "".join(out)


def _legend() -> str:
    items = "".join(
        f"<span><i style='background:{_colour(k)}'></i>{html.escape(PAGE_KINDS[k].word)}</span>" for k in PageKind
    )
    return f"<div class='legend'>{items}</div>"


def _block_maps(maps: PageMaps | None) -> str:
    if maps is None or not maps.blocks:
        return "<p class='muted'>No RAM blocks.</p>"
    out = []
    for bm in maps.blocks.values():
        out.append(_block_map(bm))
    return "".join(out)


def _block_map(bm: BlockMap) -> str:
    width = _map_width(len(bm.cells))
    png = base64.b64encode(png_indexed(bm.cells, width)).decode() if len(bm.cells) else ""
    counts = bm.counts()
    unit = "page" if bm.bucket == 1 else f"{bm.bucket} pages"
    facts = ", ".join(f"{v:,} {PAGE_KINDS[k].word}" for k, v in counts.items() if v)
    scale = max(1, min(8, 512 // width))
    img = (
        (
            f"<img class='map' alt='page map of {html.escape(bm.name)}' src='data:image/png;base64,{png}' "
            f"style='width:{width * scale}px'>"
        )
        if png
        else ""
    )
    return (
        f"<section class='block'><h3>{html.escape(bm.name)} <small>{human_size(bm.length)}, "
        f"{bm.pages:,} pages; one pixel = {unit}</small></h3><p class='muted'>{facts}</p>{img}</section>"
    )


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 4px} small,.muted{color:#666;font-weight:normal}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f5f5f7} td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px 24px}
.error{background:#fde8e8;border:1px solid #f5a3a3;padding:8px 12px;border-radius:6px}
.ok{background:#e8f6ec;border:1px solid #9fd8ae;padding:8px 12px;border-radius:6px}
.legend span{margin-right:14px;white-space:nowrap} .legend i{display:inline-block;width:12px;height:12px;
margin-right:5px;vertical-align:-1px;border:1px solid #0002}
img.map{image-rendering:pixelated;border:1px solid #ccc;display:block}
figure{display:inline-block;margin:0 24px 8px 0} figcaption{font-weight:600;margin-bottom:4px}
svg .axis{font-size:11px;fill:#555}
"""


def render(data: ReportData) -> str:
    s = data.summary
    title = f"migstream report: {data.path}"
    rows = [
        ("machine", s.get("machine")),
        ("stream version", s.get("version")),
        ("page size", f"{s.get('page_size')} ({s.get('page_size_source')})"),
        ("capabilities", ", ".join(s.get("capabilities") or []) or "none"),
        ("RAM iterations", f"{s.get('ram_iterations')} PART sections"),
        ("sections", ", ".join(f"{k} {v}" for k, v in (s.get("sections") or {}).items())),
        ("commands", ", ".join(f"{k} {v}" for k, v in (s.get("commands") or {}).items()) or "none"),
        ("VMDESCRIPTION", "present" if s.get("has_vmdescription") else "absent"),
        ("stream bytes", f"{s.get('stream_bytes'):,}"),
    ]
    summary_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    rec_rows = "".join(
        f"<tr><td><i style='display:inline-block;width:10px;height:10px;background:"
        f"{_colour(_KIND_OF_KEY[k]) if k in _KIND_OF_KEY else '#999'}'></i> {html.escape(page_kind_word(k))}</td>"
        f"<td class='n'>{v['count']:,}</td><td class='n'>{human_size(v['bytes'])}</td></tr>"
        for k, v in (s.get("records") or {}).items()
    )
    blocks = "".join(
        f"<tr><td>{html.escape(b['name'])}</td><td class='n'>{human_size(b['length'])}</td>"
        f"<td class='n'>{b['length']:#x}</td></tr>"
        for b in s.get("ram_blocks") or []
    )
    devices = "".join(
        f"<tr><td>{html.escape(d['idstr'])}</td><td class='n'>{d['instance_id']}</td>"
        f"<td class='n'>{d['length']:,}</td><td class='n'>0x{d['offset']:x}</td>"
        f"<td>{html.escape(d['framing'])}</td></tr>"
        for d in s.get("devices") or []
    )
    if data.error:
        status = f"<p class='error'><b>Invalid stream.</b> {html.escape(data.error)}</p>"
    elif data.incomplete:
        status = f"<p class='error'><b>Incomplete.</b> {html.escape(data.incomplete)}</p>"
    elif s.get("undecoded"):
        status = f"<p class='error'>Not everything was decoded: {html.escape(s['undecoded'])}</p>"
    else:
        status = "<p class='ok'>Valid: QEMU's loader checks all pass.</p>"
    if data.warnings:
        status += "<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in data.warnings) + "</ul>"
    device_table = (
        "<table><tr><th>device</th><th>instance</th><th>bytes</th><th>offset</th><th>framing</th></tr>"
        + devices
        + "</table>"
        if devices
        else "<p class='muted'>None.</p>"
    )
    iters = data.maps.iterations if data.maps else []
    charts = _bars(iters, "pages", "Pages per RAM section", lambda v: f"{v:,} pages") + _bars(
        iters, "bytes", "Bytes per RAM section", human_size
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>Migration stream report</h1><p class="muted">{html.escape(data.path)}</p>
{status}
<div class="grid"><div><h2>Summary</h2><table>{summary_rows}</table></div>
<div><h2>Records by encoding</h2><table><tr><th>encoding</th><th>records</th><th>bytes</th></tr>{rec_rows}</table>
<h2>RAM blocks</h2><table><tr><th>block</th><th>size</th><th>length</th></tr>{blocks}</table></div></div>
<h2>Iterations</h2><p class="muted">S = the START section, E = END; one bar per RAM section.</p>
{_legend()}{charts}
<h2>Page maps</h2><p class="muted">How each page was last sent, left to right, top to bottom.</p>
{_legend()}{_block_maps(data.maps)}
<h2>Device sections</h2>
{device_table}
</body></html>
"""
