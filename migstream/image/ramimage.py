"""Guest RAM rebuilt from RAM records: one sparse file per RAM block.

Pages are applied with ram_load_precopy semantics (decode/pages.py, which also
raises the loader's errors): ZERO fills the page with its byte, PAGE copies it,
XBZRLE patches the current content in place, COMPRESS_PAGE inflates one zlib
stream.  ZERO and PAGE records are written straight from the stream here (holes
stay holes); XBZRLE and COMPRESS_PAGE pages go through ``apply_page``.  Every
record is applied or, for a block left out, its delta checked, so ``extract``
turns the decoder's own delta check off: each delta is decoded once.  Files are written with
batched pwritev (``BlockWriter``), never mapped, so memory use does not grow with
the guest; pages never sent stay holes.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from dataclasses import dataclass
from dataclasses import field

from ..decode.mappedram import written_runs
from ..decode.pages import apply_page
from ..decode.pages import apply_xbzrle
from ..errors import UsageError
from ..events import MappedRamBlock
from ..events import MappedRamPages
from ..events import MultifdPacket
from ..events import PageRecord
from ..events import PageRun
from ..events import RamBlockList
from ..wire.fastpath import write_run
from ..wire.grammar import RAM_COMPRESS_PAGE
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_XBZRLE
from ..wire.grammar import RAM_ZERO
from .blockwriter import BlockWriter
from .manifest import MANIFEST

_CHUNK_PAGES = 1 << 16  # pages per bitmap chunk
#: bytes.translate table: a run's kinds -> 1 for a PAGE record, 0 for a ZERO one (what
#: the written-pages map stores).
_PAGE_IS_1 = bytes(int(k == RAM_PAGE) for k in range(256))
_HOLE_MIN = 2  # zero pages in a row that are left as a hole rather than written
#: Bulk runs into fresh block files written by the compiled helper (no Python object
#: per page); False: the Python loop of _apply_run, its reference.
COMPILED = True


class PageBitmap:
    """Which pages of a block hold data on disk: sparse chunks of bytes, so a
    hostile block length costs nothing until pages arrive."""

    def __init__(self) -> None:
        self._chunks: dict[int, bytearray] = {}

    def _spans(self, first: int, n: int):
        while n > 0:
            c, i = divmod(first, _CHUNK_PAGES)
            k = min(n, _CHUNK_PAGES - i)
            yield c, i, k
            first += k
            n -= k

    def mark(self, first: int, n: int = 1, value: bool = True) -> None:
        fill = (b"\1" if value else b"\0") * min(n, _CHUNK_PAGES)
        for c, i, k in self._spans(first, n):
            arr = self._chunks.get(c)
            if arr is None:
                if not value:
                    continue
                arr = self._chunks[c] = bytearray(_CHUNK_PAGES)
            arr[i : i + k] = fill[:k]

    def store(self, first: int, bits: bytes) -> None:
        """Set pages first.. to the 0/1 values in ``bits``."""
        done = 0
        for c, i, k in self._spans(first, len(bits)):
            arr = self._chunks.get(c)
            if arr is None:
                if bits.find(1, done, done + k) < 0:
                    done += k
                    continue
                arr = self._chunks[c] = bytearray(_CHUNK_PAGES)
            arr[i : i + k] = bits[done : done + k]
            done += k

    def get(self, page: int) -> bool:
        arr = self._chunks.get(page // _CHUNK_PAGES)
        return arr is not None and arr[page % _CHUNK_PAGES] == 1

    def set_each(self, pages, value: bool = True) -> None:
        """Mark single pages (scattered, as multifd packets list them)."""
        v = 1 if value else 0
        chunks = self._chunks
        for page in pages:
            c, i = divmod(page, _CHUNK_PAGES)
            arr = chunks.get(c)
            if arr is None:
                if not v:
                    continue
                arr = chunks[c] = bytearray(_CHUNK_PAGES)
            arr[i] = v

    def any(self, first: int, n: int = 1) -> bool:
        for c, i, k in self._spans(first, n):
            arr = self._chunks.get(c)
            if arr is not None and arr.find(1, i, i + k) >= 0:
                return True
        return False


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


def new_file(path: str) -> int:
    """A new, empty file at ``path`` opened read-write.  A file left by an earlier run
    is unlinked, not truncated: truncating a big file with dirty pages waits for its
    writeback (minutes on slow disks)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)


@dataclass
class BlockFile:
    name: str
    length: int | None  # None: not announced by MEM_SIZE
    file: str
    fd: int
    written: PageBitmap = field(default_factory=PageBitmap)
    extent: int = 0  # highest byte written
    mapped_bitmap: bytes | None = None  # mapped-ram: which pages of the region hold data
    # Placed in a shared file (``dump``): (block offset, length, file offset) pieces,
    # ascending and page-aligned; None: the block's own file, offset = block offset.
    pieces: list[tuple[int, int, int]] | None = None


class RamImage:
    """Applies page records to per-block files under ``directory``."""

    def __init__(
        self,
        directory: str,
        page_size: int,
        *,
        only: set[str] | None = None,
        names: set[str] | None = None,
        placement: dict[str, tuple[int, list[tuple[int, int, int]]]] | None = None,
    ) -> None:
        """``placement`` (``dump``): block name -> (fd, pieces): the block's bytes go
        into that shared file (the caller's to close) instead of a block file; blocks
        not in it are left out like blocks not in ``only``."""
        self.directory = directory
        self.page_size = page_size
        self.only = only
        self.blocks: dict[str, BlockFile] = {}
        # File names taken in the directory (shared with whoever else writes there).
        self._names: set[str] = names if names is not None else {MANIFEST}
        self._zero_page = bytes(page_size)
        os.makedirs(directory, exist_ok=True)
        self._writes = BlockWriter()
        self.placement = placement

    # --- blocks ------------------------------------------------------------------

    def _open(self, name: str, length: int | None) -> BlockFile | None:
        if self.only is not None and name not in self.only:
            return None
        blk = self.blocks.get(name)
        if self.placement is not None:
            if blk is None:
                if name not in self.placement:
                    return None
                fd, pieces = self.placement[name]
                blk = self.blocks[name] = BlockFile(name, length, "", fd, pieces=pieces)
            if length is not None:
                blk.length = length
            return blk
        if blk is None:
            fname = safe_file_name(name, self._names)
            fd = new_file(os.path.join(self.directory, fname))
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
        t = type(ev)
        if t is PageRun:
            self._apply_run(ev)
        elif t is PageRecord:
            self._apply_record(ev)
        elif t is MultifdPacket:
            self._apply_multifd(ev)
        elif t is MappedRamPages:
            self._apply_mapped(ev)
        elif t is MappedRamBlock:
            blk = self._open(ev.name, ev.used_length)
            if blk is not None:
                blk.mapped_bitmap = ev.bitmap
        elif t is RamBlockList:
            self.define_blocks(ev)

    def _block(self, name: str) -> BlockFile | None:
        blk = self.blocks.get(name)
        if blk is None:
            blk = self._open(name, None)
        return blk

    def _put(self, blk: BlockFile, offset: int, buffers: list) -> None:
        """Write ``buffers`` at block ``offset``: to the block file, or split over the
        block's pieces in a shared file (pieces are page-aligned, so are the splits)."""
        if blk.pieces is None:
            self._writes.add(blk.fd, offset, buffers)
            return
        for boff, length, foff in blk.pieces:
            if boff <= offset < boff + length:
                total = sum(len(b) for b in buffers)
                if offset + total <= boff + length:
                    self._writes.add(blk.fd, foff + offset - boff, buffers)
                    return
                break
        # Crosses a piece boundary (or lies outside every piece): byte by byte ranges.
        at = offset
        for buf in buffers:
            view = memoryview(buf).cast("B")
            while len(view):
                piece = next((p for p in blk.pieces if p[0] <= at < p[0] + p[1]), None)
                if piece is None:
                    nxt = min((p[0] for p in blk.pieces if p[0] > at), default=at + len(view))
                    k = min(len(view), nxt - at)  # outside every piece: not in the image
                else:
                    k = min(len(view), piece[0] + piece[1] - at)
                    self._writes.add(blk.fd, piece[2] + at - piece[0], [view[:k]])
                view = view[k:]
                at += k

    def _get(self, blk: BlockFile, offset: int, n: int) -> bytes:
        if blk.pieces is None:
            return os.pread(blk.fd, n, offset)
        for boff, length, foff in blk.pieces:
            if boff <= offset < boff + length:
                return os.pread(blk.fd, min(n, boff + length - offset), foff + offset - boff)
        return b""

    def _wrote(self, blk: BlockFile, end: int) -> None:
        if end > blk.extent:
            blk.extent = end

    def _apply_record(self, rec: PageRecord) -> None:
        kind = rec.flags & ~RAM_CONTINUE
        blk = self._block(rec.block)
        ps = self.page_size
        if blk is None:
            if kind == RAM_XBZRLE:
                # A block left out is not written, but its deltas are still checked:
                # the decoder leaves that to us (check_deltas off in extract).
                apply_xbzrle(bytearray(ps), rec.data, rec.offset, rec.block, rec.addr)
            return
        page_no = rec.addr // ps
        if kind == RAM_PAGE:
            self._put(blk, rec.addr, [rec.data])
        elif kind == RAM_ZERO:
            self._zero_fill(blk, page_no, 1, rec.fill)
            return
        elif kind == RAM_XBZRLE or kind == RAM_COMPRESS_PAGE:
            if kind == RAM_XBZRLE:
                self._writes.wait()  # the page on disk must be current before it is patched
                page = bytearray(self._get(blk, rec.addr, ps).ljust(ps, b"\0"))
            else:
                page = bytearray(ps)  # COMPRESS_PAGE replaces the whole page
            apply_page(page, kind, rec.data, offset=rec.offset, block=rec.block, addr=rec.addr)
            self._put(blk, rec.addr, [page])
        else:
            return
        blk.written.mark(page_no)
        self._wrote(blk, rec.addr + ps)

    def _zero_fill(self, blk: BlockFile, first: int, n: int, fill: int) -> None:
        # ram_handle_zero: memset only when needed; a hole already reads as zero.
        ps = self.page_size
        if fill:
            page = bytes([fill]) * ps
            for p in range(first, first + n):
                self._put(blk, p * ps, [page])
            blk.written.mark(first, n)
        elif blk.written.any(first, n):
            for p in range(first, first + n):
                if blk.written.any(p):
                    self._put(blk, p * ps, [self._zero_page])
            blk.written.mark(first, n, False)
        self._wrote(blk, (first + n) * ps)

    def _apply_run(self, run: PageRun) -> None:
        """Write a run with few system calls: pages go out in pwritev batches;
        a zero page between data pages is written as zeros (one syscall instead of
        three), while stretches of at least ``_HOLE_MIN`` zero pages stay holes,
        so block files remain sparse.  Without the compiled writer the stretches are found
        with numpy."""
        blk = self._block(run.block)
        if blk is None:
            return
        ps = self.page_size
        n = run.count
        first = run.addr // ps
        data = run.data
        zp = self._zero_page
        # No page of the run's range written before (the bulk stage): its zero
        # stretches are holes already, nothing to check or clear page by page.
        fresh = not blk.written.any(first, n)
        # What each page holds once the run is applied: PAGE data (1) or zeros (0).
        holds_data = run.kinds.translate(_PAGE_IS_1)
        # The compiled writer, for a fresh run.  It writes at block offsets of the
        # block's own file: not for a block placed in pieces of a shared file (dump),
        # whose writes go through _put.  numpy is not imported on this path (50 ms of
        # extract's start-up).
        if fresh and COMPILED and write_run is not None and blk.pieces is None and isinstance(run.starts, array):
            self._writes.submit()  # earlier writes first
            if write_run(blk.fd, data, run.starts, run.kinds, RAM_PAGE, ps, run.addr, _HOLE_MIN, zp):
                blk.written.store(first, holds_data)
                self._wrote(blk, run.addr + n * ps)
            else:  # a ZERO record with a non-zero fill byte (rare): record by record
                for rec in run.records():
                    self._apply_record(rec)
            return
        import numpy as np

        kinds = np.frombuffer(run.kinds, dtype=np.uint8)
        starts = np.asarray(run.starts, dtype=np.int64)
        ends = np.append(starts[1:], len(data))  # a record ends with its page or fill byte
        is_page = kinds == RAM_PAGE
        fills = np.frombuffer(data, dtype=np.uint8)[ends[~is_page] - 1] if n > is_page.sum() else None
        if fills is not None and fills.any():
            # ZERO records with a non-zero fill byte are rare: apply them one by one.
            for rec in run.records():
                self._apply_record(rec)
            return
        # Stretches: [edges[k], edges[k+1]) hold one kind.
        edges = np.concatenate(([0], np.flatnonzero(kinds[1:] != kinds[:-1]) + 1, [n]))
        page_first = bool(is_page[0])
        pages = [data[s : s + ps] for s in (ends[is_page] - ps).tolist()]
        at = 0  # next unused entry of pages
        iov: list = []
        iov_at = 0
        bounds = edges.tolist()
        for k in range(len(bounds) - 1):
            i, j = bounds[k], bounds[k + 1]
            if (k % 2 == 0) == page_first:  # a stretch of PAGE records
                if not iov:
                    iov_at = i
                iov.extend(pages[at : at + j - i])
                at += j - i
            elif iov and j < n and j - i < _HOLE_MIN:
                iov.extend([zp] * (j - i))
            else:
                if iov:
                    self._put(blk, run.addr + iov_at * ps, iov)
                    iov = []
                if not fresh:
                    self._zero_fill(blk, first + i, j - i, 0)
        if iov:
            self._put(blk, run.addr + iov_at * ps, iov)
        blk.written.store(first, holds_data)
        self._wrote(blk, run.addr + n * ps)
        self._writes.submit()

    def _apply_multifd(self, pkt: MultifdPacket) -> None:
        """A multifd packet (multifd_recv_thread): zero pages are zeroed, normal pages
        copied; consecutive offsets go out as one write."""
        if not pkt.normal and not pkt.zero:
            return  # a SYNC packet (or an empty one): no block
        blk = self._block(pkt.block)
        if blk is None:
            return
        ps = self.page_size
        written = blk.written
        if pkt.zero:
            # multifd_recv_zero_page_process: only pages that hold data need zeroing.
            for addr in pkt.zero:
                if written.get(addr // ps):
                    self._put(blk, addr, [self._zero_page])
            written.set_each([addr // ps for addr in pkt.zero], False)
            self._wrote(blk, max(pkt.zero) + ps)
        normal = pkt.normal
        n = len(normal)
        if n:
            i = 0
            while i < n:
                j = i + 1
                while j < n and normal[j] == normal[j - 1] + ps:
                    j += 1
                # The payload holds the pages in table order: a stretch is one slice.
                self._put(blk, normal[i], [pkt.pages[i * ps : j * ps]])
                i = j
            written.set_each([addr // ps for addr in normal])
            self._wrote(blk, max(normal) + ps)

    def _apply_mapped(self, ev: MappedRamPages) -> None:
        """Copy the pages of a mapped-ram region stretch whose bitmap bit is set;
        holes are neither read nor written (read_ramblock_mapped_ram)."""
        blk = self._block(ev.block)
        if blk is None or not blk.mapped_bitmap:
            return
        ps = self.page_size
        first = ev.addr // ps
        for page, count in written_runs(blk.mapped_bitmap, first, len(ev.data) // ps):
            self._put(blk, page * ps, [ev.data[(page - first) * ps : (page - first + count) * ps]])
            blk.written.mark(page, count)
            self._wrote(blk, (page + count) * ps)
        self._writes.submit()

    # --- finishing -------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every page applied so far is in the block files."""
        self._writes.wait()

    def close(
        self, *, machine: str | None, complete: bool, error: str | None = None, extra: dict | None = None
    ) -> dict:
        """Close the files and write ``manifest.json``; returns the manifest."""
        self._writes.close()
        blocks = []
        for blk in self.blocks.values():
            length = blk.length if blk.length is not None else blk.extent
            if blk.pieces is not None:
                pass  # a shared file: the caller's
            else:
                if blk.length is None:
                    os.ftruncate(blk.fd, length)
                os.close(blk.fd)
            blocks.append({"name": blk.name, "length": length, "file": blk.file, "announced": blk.length is not None})
        manifest = {"page_size": self.page_size, "machine": machine, "blocks": blocks, "complete": complete}
        if error:
            manifest["error"] = error
        if extra:
            manifest.update(extra)
        self.rewrite_manifest(manifest)
        self.blocks.clear()
        return manifest

    def rewrite_manifest(self, manifest: dict) -> None:
        """Write ``manifest.json`` atomically (also after annotations by the caller)."""
        tmp = os.path.join(self.directory, MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.replace(tmp, os.path.join(self.directory, MANIFEST))
