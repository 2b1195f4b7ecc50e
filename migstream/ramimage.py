"""Guest RAM rebuilt from RAM records: one sparse file per RAM block.

This is the one place where a page is applied (ram_load_precopy semantics):
ZERO fills the page with its byte, PAGE copies it, XBZRLE patches the current
content in place, COMPRESS_PAGE inflates one zlib stream.  Files are written with
pwrite/pwritev, never mapped, so memory use does not grow with the guest; pages
never sent stay holes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .codecs.xbzrle import xbzrle_decode_into
from .decoder import inflate_page
from .errors import StreamError, UsageError, XbzrleError
from .events import PageRecord, PageRun, RamBlockList
from .grammar import RamFlag

_CHUNK_PAGES = 1 << 16  # pages per bitmap chunk
_WRITE_BATCH = 1024  # pages per pwrite when copying runs


class PageBitmap:
    """Which pages of a block were written: sparse, in chunks, so a hostile block
    length costs nothing until pages arrive."""

    def __init__(self) -> None:
        self._chunks: dict[int, np.ndarray] = {}

    def _chunk(self, c: int) -> np.ndarray:
        arr = self._chunks.get(c)
        if arr is None:
            arr = self._chunks[c] = np.zeros(_CHUNK_PAGES, dtype=bool)
        return arr

    def get(self, pages: np.ndarray) -> np.ndarray:
        out = np.zeros(len(pages), dtype=bool)
        chunks = pages // _CHUNK_PAGES
        for c in np.unique(chunks):
            arr = self._chunks.get(int(c))
            if arr is not None:
                sel = chunks == c
                out[sel] = arr[pages[sel] % _CHUNK_PAGES]
        return out

    def set(self, pages: np.ndarray, value: bool = True) -> None:
        chunks = pages // _CHUNK_PAGES
        for c in np.unique(chunks):
            sel = chunks == c
            self._chunk(int(c))[pages[sel] % _CHUNK_PAGES] = value

    def count(self) -> int:
        return int(sum(int(a.sum()) for a in self._chunks.values()))


def safe_file_name(name: str, taken: set[str]) -> str:
    """A relative file name for a block idstr (``/rom@etc/acpi/tables`` ->
    ``rom@etc_acpi_tables.bin``), unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._@+-]", "_", name.strip("/")) or "block"
    base = base.lstrip(".") or "block"
    candidate = base + ".bin"
    n = 2
    while candidate in taken:
        candidate = f"{base}-{n}.bin"
        n += 1
    taken.add(candidate)
    return candidate


@dataclass
class BlockFile:
    name: str
    length: int | None  # None: not announced by MEM_SIZE
    file: str
    fd: int
    written: PageBitmap = field(default_factory=PageBitmap)
    extent: int = 0  # highest byte written


class RamImage:
    """Applies page records to per-block files under ``directory``."""

    def __init__(self, directory: str, page_size: int, *, only: set[str] | None = None) -> None:
        self.directory = directory
        self.page_size = page_size
        self.only = only
        self.blocks: dict[str, BlockFile] = {}
        self._names: set[str] = {"manifest.json"}
        self._zero_page = bytes(page_size)
        os.makedirs(directory, exist_ok=True)

    # --- blocks ------------------------------------------------------------------

    def _open(self, name: str, length: int | None) -> BlockFile | None:
        if self.only is not None and name not in self.only:
            return None
        blk = self.blocks.get(name)
        if blk is None:
            fname = safe_file_name(name, self._names)
            path = os.path.join(self.directory, fname)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            blk = self.blocks[name] = BlockFile(name, length, fname, fd)
        if length is not None:
            blk.length = length
            try:
                os.ftruncate(blk.fd, length)  # sparse: holes read as zero
            except OSError as exc:
                raise UsageError(f"cannot create a {length}-byte sparse file for block {name}: {exc}") from exc
        return blk

    def define_blocks(self, event: RamBlockList) -> None:
        for b in event.blocks:
            self._open(b.name, b.used_length)

    # --- pages --------------------------------------------------------------------

    def apply(self, ev) -> None:
        """Apply a PageRecord or PageRun (other events are ignored)."""
        if isinstance(ev, PageRun):
            self._apply_run(ev)
        elif isinstance(ev, PageRecord):
            self._apply_record(ev)
        elif isinstance(ev, RamBlockList):
            self.define_blocks(ev)

    def _block(self, name: str) -> BlockFile | None:
        blk = self.blocks.get(name)
        if blk is None:
            blk = self._open(name, None)
        return blk

    def _wrote(self, blk: BlockFile, first_addr: int, end: int) -> None:
        if end > blk.extent:
            blk.extent = end

    def _apply_record(self, rec: PageRecord) -> None:
        blk = self._block(rec.block)
        if blk is None:
            return
        ps = self.page_size
        kind = rec.flags & ~RamFlag.CONTINUE
        page_no = np.array([rec.addr // ps], dtype=np.uint64)
        if kind == RamFlag.PAGE:
            os.pwrite(blk.fd, rec.data, rec.addr)
        elif kind == RamFlag.ZERO:
            if rec.fill:
                os.pwrite(blk.fd, bytes([rec.fill]) * ps, rec.addr)
            elif blk.written.get(page_no)[0]:
                os.pwrite(blk.fd, self._zero_page, rec.addr)
            else:
                self._wrote(blk, rec.addr, rec.addr + ps)
                return  # a hole already reads as zero
        elif kind == RamFlag.XBZRLE:
            page = bytearray(os.pread(blk.fd, ps, rec.addr).ljust(ps, b"\0"))
            try:
                xbzrle_decode_into(rec.data, page)
            except XbzrleError as exc:
                raise StreamError(f"Failed to load XBZRLE page - decode error! ({exc})", rec.offset,
                                  section="ram", block=rec.block, addr=rec.addr) from exc
            os.pwrite(blk.fd, page, rec.addr)
        elif kind == RamFlag.COMPRESS_PAGE:
            try:
                page = inflate_page(rec.data, ps)
            except Exception as exc:  # zlib.error
                raise StreamError(f"decompress data failed: {exc}", rec.offset, section="ram",
                                  block=rec.block, addr=rec.addr) from exc
            os.pwrite(blk.fd, page, rec.addr)
        else:
            return
        blk.written.set(page_no)
        self._wrote(blk, rec.addr, rec.addr + ps)

    def _apply_run(self, run: PageRun) -> None:
        blk = self._block(run.block)
        if blk is None:
            return
        ps = self.page_size
        addrs = run.addrs
        pages_no = addrs // np.uint64(ps)
        if run.pages is not None:
            # Split into stretches of consecutive pages; each becomes one pwrite of a
            # contiguous copy (bounded batch, so memory stays flat).
            breaks = np.flatnonzero(np.diff(addrs) != ps) + 1
            starts = np.concatenate(([0], breaks))
            ends = np.concatenate((breaks, [run.count]))
            for a, b in zip(starts.tolist(), ends.tolist()):
                for s in range(a, b, _WRITE_BATCH):
                    e = min(b, s + _WRITE_BATCH)
                    os.pwrite(blk.fd, np.ascontiguousarray(run.pages[s:e]), int(addrs[s]))
            blk.written.set(pages_no)
        else:
            fills = run.fills
            nonzero = fills != 0
            for i in np.flatnonzero(nonzero).tolist():
                os.pwrite(blk.fd, bytes([int(fills[i])]) * ps, int(addrs[i]))
            zero = ~nonzero
            if zero.any():
                # Only pages that hold data need zeroing; holes already read as zero.
                zpages = pages_no[zero]
                dirty = blk.written.get(zpages)
                for p in zpages[dirty].tolist():
                    os.pwrite(blk.fd, self._zero_page, p * ps)
                blk.written.set(zpages, False)
            if nonzero.any():
                blk.written.set(pages_no[nonzero])
        self._wrote(blk, int(addrs.min()), int(addrs.max()) + ps)

    # --- finishing -------------------------------------------------------------------

    def close(self, *, machine: str | None, complete: bool, error: str | None = None,
              extra: dict | None = None) -> dict:
        """Close the files and write ``manifest.json``; returns the manifest."""
        blocks = []
        for blk in self.blocks.values():
            length = blk.length if blk.length is not None else blk.extent
            if blk.length is None:
                os.ftruncate(blk.fd, length)
            os.close(blk.fd)
            blocks.append({"name": blk.name, "length": length, "file": blk.file,
                           "announced": blk.length is not None})
        manifest = {"page_size": self.page_size, "machine": machine, "blocks": blocks, "complete": complete}
        if error:
            manifest["error"] = error
        if extra:
            manifest.update(extra)
        tmp = os.path.join(self.directory, "manifest.json.tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.replace(tmp, os.path.join(self.directory, "manifest.json"))
        self.blocks.clear()
        return manifest
