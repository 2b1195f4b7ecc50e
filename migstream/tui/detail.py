"""The detail pane: the current record's header bits explained, a hex dump of its
header and payload, the inflated page of a COMPRESS_PAGE record and, for XBZRLE,
the delta's runs laid over the page (old bytes against new bytes)."""

from __future__ import annotations

from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..codecs.zlibpage import inflate_page
from ..events import flag_names
from ..tools.index import RecordDetail
from ..tools.index import RowKind
from ..tools.index import StreamIndex
from ..tools.index import xbzrle_runs
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RamFlag

#: What each RAM_SAVE_FLAG bit means (migration/ram.c, ram.h).
FLAG_MEANING = {
    RamFlag.FULL: "obsolete since 2009; QEMU rejects it",
    RamFlag.ZERO: "the page is filled with one byte (a zero page): payload is that byte",
    RamFlag.MEM_SIZE: "RAM block list: total size in the address bits, then every block",
    RamFlag.PAGE: "a raw page follows (TARGET_PAGE_SIZE bytes)",
    RamFlag.EOS: "end of this section's RAM data",
    RamFlag.CONTINUE: "same block as the previous record on this channel: no block name",
    RamFlag.XBZRLE: "XBZRLE delta against the destination's copy: u8 encoding, be16 length, delta",
    RamFlag.HOOK: "RDMA hook (never in a file or socket stream)",
    RamFlag.COMPRESS_PAGE: "zlib-compressed page: be32 length, one zlib stream (QEMU 2.4-9.0)",
    RamFlag.MULTIFD_FLUSH: "multifd sync point: pages of this round may arrive on any channel before it",
}

HEX_LIMIT = 64 << 10  # bytes dumped at most


def _hex_line(base: int, line: bytes) -> str:
    cells = [f"{b:02x}" for b in line] + ["  "] * (16 - len(line))
    ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in line)
    return f"{base:08x}  {' '.join(cells[:8])}  {' '.join(cells[8:])}  |{ascii_}|\n"


def _hex_col(i: int) -> int:
    """Column of byte i's two hex digits in a _hex_line."""
    return 10 + 3 * i + (1 if i >= 8 else 0)


def hexdump(
    data: bytes, base: int = 0, *, highlight: set[int] | None = None, style: str = "bold reverse", squeeze: bool = True
) -> Text:
    """``hexdump -C`` style, identical lines folded into ``*``; bytes at offsets in
    ``highlight`` styled.  One string per line (styles as spans): a 4 KiB page is
    256 appends, not 4096."""
    text = Text()
    prev = None
    folded = False
    for at in range(0, len(data), 16):
        line = data[at : at + 16]
        marked = [i for i in range(len(line)) if at + i in highlight] if highlight else []
        if squeeze and line == prev and not marked and at + 16 < len(data):
            if not folded:
                text.append("*\n", style="dim")
                folded = True
            continue
        folded = False
        prev = line
        start = len(text)
        text.append(_hex_line(base + at, line))
        text.stylize("dim", start, start + 10)  # address and its gap: one segment
        for i in marked:
            col = start + _hex_col(i)
            text.stylize(style, col, col + 2)
            asc = start + _hex_col(15) + 2 + 3 + i
            text.stylize(style, asc, asc + 1)
    return text


class DetailPane(ScrollView, can_focus=True):
    """The description of one record as lines of text, Line API: a 4 KiB page's
    hex dumps are built once per record and only visible lines are rendered."""

    def __init__(self, index: StreamIndex, **kw) -> None:
        super().__init__(**kw)
        self.index = index
        self.lines: list[Text] = []
        self._strips: LRUCache[tuple, Strip] = LRUCache(256)
        self._version = 0

    @property
    def text(self) -> Text:
        """Everything shown, as one Text (for tests and copying)."""
        return Text("\n").join(self.lines)

    def show(self, row: int | None) -> None:
        if row is None or row >= self.index.count:
            text = Text("")
        else:
            try:
                text = self.describe(row)
            except Exception as exc:  # a record that cannot be read back: say so, don't crash the UI
                text = Text(f"cannot show row {row}: {exc}", style="bold red")
        self.lines = list(text.split("\n"))
        self._version += 1
        width = max((line.cell_len for line in self.lines), default=0)
        self.virtual_size = Size(width, len(self.lines))
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def notify_style_update(self) -> None:
        # A theme switch changes the base style: the cached lines go.
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = int(self.scroll_y) + y
        x = int(self.scroll_x)
        key = (self._version, index, x, width)
        strip = self._strips.get(key)
        if strip is None:
            base = self.rich_style
            if index >= len(self.lines):
                strip = Strip.blank(width, base)
            else:
                segments = list(self.lines[index].render(self.app.console))
                strip = Strip(segments).apply_style(base).crop_extend(x, x + width, base)
            self._strips[key] = strip
        return strip

    def describe(self, row: int) -> Text:
        ix = self.index
        d = ix.detail(row)
        sec = ix.section_of_row(row)
        text = Text()
        text.append(f"row {row}  ", style="bold")
        text.append(f"offset {d.offset:#x}  {d.size} bytes")
        if sec is not None:
            where = sec.label + (f" (iteration {sec.iteration})" if sec.iteration is not None else "")
            text.append(f"  in {where}")
        text.append("\n")
        if d.kind in (RowKind.PAGE, RowKind.MARKER, RowKind.MEM_SIZE):
            self._ram(text, d)
        else:
            text.append(f"{d.description or d.kind.name.lower()}\n")
            text.append("header\n", style="bold underline")
            text.append_text(hexdump(d.header, d.offset, squeeze=False))
            if d.payload:
                text.append("payload\n", style="bold underline")
                text.append_text(hexdump(d.payload[:HEX_LIMIT], d.offset + len(d.header)))
        return text

    def _ram(self, text: Text, d: RecordDetail) -> None:
        ix = self.index
        if d.multifd is not None:
            if d.addr is not None:
                text.append(f"block {d.block!r}, page {d.addr // (ix.page_size or 4096)} at offset {d.addr:#x}\n")
            text.append(d.description + "\n")
            if not d.flags & RamFlag.PAGE:
                text.append("payload: none (listed among the packet's zero pages)\n")
                return
            page = ix.multifd_page(d.row)
            if page is None:
                text.append("the page cannot be read back from its channel file\n", style="bold red")
                return
            text.append("payload: the page (read back from the channel file)\n", style="bold underline")
            text.append_text(hexdump(page))
            return
        value = int.from_bytes(d.header[:8], "big")
        text.append(f"be64 header {value:#018x} = ")
        text.append(f"address {value & ~((ix.page_size or 4096) - 1):#x}", style="bold")
        text.append(" | ")
        text.append(f"flags {d.flags:#x} {flag_names(d.flags)}\n", style="bold")
        for bit in RamFlag:
            if d.flags & bit:
                text.append(f"  {int(bit):#06x} {bit.name:<14}", style="bold")
                text.append(f" {FLAG_MEANING[bit]}\n")
        if d.block is not None and d.addr is not None:
            src = "named in this record" if d.idstr_in_record else "from the previous record (CONTINUE)"
            text.append(f"block {d.block!r} ({src}), page {d.addr // (ix.page_size or 4096)} at offset {d.addr:#x}\n")
        kind = d.flags & ~RAM_CONTINUE
        text.append("header bytes\n", style="bold underline")
        text.append_text(hexdump(d.header, d.offset, squeeze=False))
        if d.kind == RowKind.MEM_SIZE:
            text.append("RAM blocks (idstr, used_length)\n", style="bold underline")
            for blk in ix.blocks:
                text.append(f"  {blk.name:<28} {blk.used_length:#12x}  {blk.pages} pages\n")
            text.append("payload\n", style="bold underline")
            text.append_text(hexdump(d.payload[:HEX_LIMIT], d.offset + len(d.header)))
        elif kind == RamFlag.ZERO:
            text.append(f"payload: fill byte {d.fill:#04x}\n")
        elif kind == RamFlag.PAGE:
            text.append("payload: the page\n", style="bold underline")
            text.append_text(hexdump(d.payload, d.offset + len(d.header)))
        elif kind == RamFlag.COMPRESS_PAGE:
            self._compressed(text, d)
        elif kind == RamFlag.XBZRLE:
            self._xbzrle(text, d)
        elif d.payload:
            text.append("payload\n", style="bold underline")
            text.append_text(hexdump(d.payload[:HEX_LIMIT], d.offset + len(d.header)))

    def _compressed(self, text: Text, d: RecordDetail) -> None:
        ps = self.index.page_size or 4096
        text.append(
            f"payload: {d.compressed_length} bytes of zlib "
            f"({100 * (d.compressed_length or 0) / ps:.1f}% of the page)\n",
            style="bold underline",
        )
        text.append_text(hexdump(d.payload, d.offset + len(d.header)))
        try:
            page = inflate_page(d.payload, ps)
        except Exception as exc:
            text.append(f"does not inflate: {exc}\n", style="bold red")
            return
        text.append("inflated page\n", style="bold underline")
        text.append_text(hexdump(page))

    def _xbzrle(self, text: Text, d: RecordDetail) -> None:
        ix = self.index
        runs = xbzrle_runs(d.payload)
        changed = sum(n for _, n, _ in runs)
        text.append(
            f"payload: {len(d.payload)}-byte delta, {len(runs)} data runs, {changed} bytes changed\n",
            style="bold underline",
        )
        text.append_text(hexdump(d.payload, d.offset + len(d.header)))
        old = ix.page_content(d.row, before=True)
        new = ix.page_content(d.row)
        text.append("runs (page offset: old bytes -> new bytes)\n", style="bold underline")
        shown = runs[:256]
        width = min(49, max((3 * n - 1 for _, n, _ in shown), default=0))
        for at, n, _ in shown:
            o = old[at : at + n].hex(" ") if old is not None else "?"
            w = new[at : at + n].hex(" ") if new is not None else "?"
            if n > 16:
                o = o[:47] + " …"
                w = w[:47] + " …"
            text.append(f"  {at:#06x} +{n:<4} ")
            text.append(f"{o:<{width}}", style="red")
            text.append(" -> ")
            text.append(w + "\n", style="green")
        if old is None or new is None:
            text.append("the page before this record cannot be rebuilt\n", style="bold red")
            return
        marks = {at + i for at, n, _ in runs for i in range(n)}
        text.append("page before (changed bytes marked)\n", style="bold underline")
        text.append_text(hexdump(old, highlight=marks, style="bold red reverse"))
        text.append("page after\n", style="bold underline")
        text.append_text(hexdump(new, highlight=marks, style="bold green reverse"))
