"""The RAM engine of a migration source (QEMU 7.2 migration/ram.c), on images.

``Encoder`` turns memory images into the byte stream a QEMU destination loads
with ``-incoming``.  It writes to a sink (``write``/``writev``) and never prints.
The order of calls mirrors a live migration::

    enc = Encoder(sink, first_image, xbzrle_cache_size=..., compress_threads=...)
    enc.start()                  # header, configuration, RAM START (MEM_SIZE, EOS)
    enc.send_bulk(first_image)   # PART: every page once (ram.c's first round)
    enc.send_iteration(image2)   # PART: pages that differ from what the destination holds
    enc.complete(image3)         # END (last_stage) + device sections + EOF + VMDESCRIPTION

Rules and where they come from (QEMU 7.2 migration/ram.c unless stated):

* Pages are visited block by block in ``ram_list`` order (MEM_SIZE order), page by
  page (``find_dirty_block``).  ``ram_save_target_page`` tries, in order:
  compression (``save_compress_page``), zero page (``save_zero_page``: ZERO with
  fill 0, counted as ``duplicate``), then ``ram_save_page`` (XBZRLE or a PAGE,
  counted as ``normal``).
* Every page record carries the block name unless the block is the channel's
  ``last_sent_block``, then CONTINUE (``save_page_header``).  The context survives
  section boundaries.
* XBZRLE (``save_xbzrle_page``) starts only after the first complete round
  (``xbzrle_enabled`` is set on wrap-around in ``find_dirty_block``).  Cache miss:
  insert (not in the last stage) and send a PAGE; hit: encode against the cached
  copy, update the cache unless the page is unchanged or this is the last stage;
  unchanged sends nothing; overflow sends a PAGE.  Zero pages refresh the cache
  (``xbzrle_cache_zero_page``).  Cache age = ``dirty_sync_count``.
* Compression (``save_compress_page``) is used only while XBZRLE is not active
  (``save_page_use_compression``); the first page of a block that is not
  ``last_sent_block`` goes out uncompressed (as ZERO or PAGE), the rest as
  COMPRESS_PAGE|CONTINUE (one zlib stream per page) or ZERO|CONTINUE from the
  compression thread (``do_compress_ram_page``).  QEMU's threads may reorder
  records within a round; this encoder keeps page order.
* Accounting as ``query-migrate`` reports it in 7.2: ``transferred`` counts page
  records (header, name, payload) and 8 bytes per PART EOS (``ram_save_iterate``),
  not MEM_SIZE nor the START/END EOS; ``xbzrle.bytes`` counts an XBZRLE record
  minus its 8-byte header, plus TARGET_PAGE_SIZE per overflow; ``xbzrle.pages``
  counts every cache hit (``save_xbzrle_page``); ``compression.compressed-size``
  counts a COMPRESS_PAGE record minus its 8-byte header
  (``update_compress_thread_counts``).  Verified against the counters of the
  samples' captures (samples.json).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import UsageError
from ..wire import build as writer
from ..wire import grammar as g
from ..wire.fastpath import IDSTR_LENGTH
from ..wire.fastpath import RAM_HEADER
from ..wire.fastpath import payload_plan
from ..wire.fastpath import write_pages
from ..wire.grammar import RAM_COMPRESS_PAGE
from ..wire.grammar import RAM_CONTINUE
from ..wire.grammar import RAM_EOS
from ..wire.grammar import RAM_PAGE
from ..wire.grammar import RAM_XBZRLE
from ..wire.grammar import RAM_ZERO
from .configuration import DEFAULT_RAM_SECTION_ID
from .configuration import target_page_bits
from .configuration import without_mapped_ram
from .memimage import MemoryImage
from .stats import CountingSink
from .stats import RamStats
from .zeropages import zero_page_mask

RamFlag = g.RamFlag

#: Pages per batch of the fast path (8 MiB of 4 KiB pages): bounds the memory of
#: header buffers and iovec lists, and keeps a batch in cache between zero-page
#: detection and writing (measured: 2048 beat 1024, 4096 and 16384).
BATCH_PAGES = 2048
#: Zero-page detection of the next batch in a helper thread.
PIPELINE = True
#: Bulk rounds of plain records written by the compiled ``write_pages`` straight from
#: the image to the sink's file descriptor (no Python object per page, no copy): a
#: regular file at offsets the sink reserves, a pipe in order; benchmarks/README.md
#: (stop 22) has the figures.  False: the numpy path, the reference it is held to.
DIRECT = True


def _payload_formats():
    """Payload layouts of the variable-size kinds, from the grammar."""
    xb = payload_plan(RamFlag.XBZRLE, 4096)  # (encoding u8, data be16-prefixed)
    cp = payload_plan(RamFlag.COMPRESS_PAGE, 4096)  # (data be32-prefixed)
    zero = payload_plan(RamFlag.ZERO, 4096)  # (fill u8)
    assert [f.size for f in zero] == [1] and xb[0].size == 1
    return xb[1].prefix, cp[0].prefix, zero[0].size


_XBZRLE_LEN, _COMPRESS_LEN, _ZERO_PAYLOAD = _payload_formats()
_HEADER_SIZE = RAM_HEADER.size
#: A ZERO|CONTINUE record: header + fill byte.
_ZERO_RECORD = _HEADER_SIZE + _ZERO_PAYLOAD
_BE64 = np.dtype(">u8")
assert RAM_HEADER.format in (">Q", "!Q")


# --- the engine ------------------------------------------------------------------------


class Encoder:
    """One outgoing migration: RAM from images, device state from an optional template."""

    def __init__(
        self,
        sink,
        first: MemoryImage,
        *,
        xbzrle_cache_size: int = 0,
        compress_threads: int = 0,
        compress_level: int = 1,
        template=None,
        ram_section_id: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.stats = RamStats(page_size=first.page_size)
        self.sink = CountingSink(sink, self.stats)
        self.machine = first.machine
        self.page_size = first.page_size
        self.layout = first.block_layout()
        self.stats.total = sum(n for _, n in self.layout)
        self.template = template
        self.first = first
        if template is not None:
            template.check_fits(self.machine, self.page_size, self.layout)
        self.section_id = (
            template.ram_section_id
            if template is not None
            else (ram_section_id if ram_section_id is not None else DEFAULT_RAM_SECTION_ID)
        )
        if self.section_id == 0:
            raise UsageError("RAM section id 0 would be taken for another handler by QEMU's loader")
        self.progress = progress
        self.last_sent_block: str | None = None  # ram.c: pss->last_sent_block
        self.xbzrle_enabled = False  # ram.c: rs->xbzrle_enabled
        self.last_stage = False
        self.cache = None
        if xbzrle_cache_size:
            from .pagecache import XbzrleCache

            if xbzrle_cache_size < self.page_size:
                raise UsageError(f"XBZRLE cache of {xbzrle_cache_size} bytes is smaller than a page ({self.page_size})")
            if xbzrle_cache_size > max(2 * self.stats.total, 64 << 20):
                # The cache is allocated up front.  QEMU takes any size (its default
                # is 64 MiB, more than small guests' RAM); beyond twice the guest's
                # RAM a cache only costs memory.
                raise UsageError(
                    f"XBZRLE cache of {xbzrle_cache_size} bytes is more than twice the guest's RAM "
                    f"({self.stats.total} bytes)"
                )
            self.cache = XbzrleCache(xbzrle_cache_size, self.page_size)
            self.stats.xbzrle_cache_size = xbzrle_cache_size
        self.compressor = None
        self.compress_level = compress_level
        if compress_threads:
            if not 0 <= compress_level <= 9:
                raise UsageError(f"compress level {compress_level} outside 0..9")
            from ..codecs.zlibpage import PageCompressor

            self.compressor = PageCompressor(compress_threads, compress_level)
            self.stats.compress_threads = compress_threads
        self._zero_page = bytes(self.page_size)
        self._state = "new"
        self._destination: MemoryImage | None = None  # what the destination holds now
        self._pages_total = 0
        self._pages_done = 0

    # --- stream structure ----------------------------------------------------------------

    def start(self) -> None:
        """File header, configuration, template sections before RAM, RAM START."""
        self._expect("new", "start")
        w = self.sink.write
        w(writer.file_header())
        if self.template is not None and self.template.configuration:
            w(without_mapped_ram(self.template.configuration))
        else:
            w(writer.configuration(self.machine, target_page_bits=target_page_bits(self.machine, self.page_size)))
        if self.template is not None:
            for piece in self.template.before_ram:
                w(piece)
        # ram_save_setup: MEM_SIZE with every block and its used length, EOS.
        # (ram_init_bitmaps performs the first bitmap sync.)
        self.stats.dirty_sync_count = 1
        w(
            writer.section_start(self.section_id, "ram", 0, g.RAM_SECTION_VERSION)
            + writer.mem_size(self.layout, page_size=self.page_size)
            + self._eos()
            + writer.footer(self.section_id)
        )
        if self.template is not None:
            for piece in self.template.during_ram:
                w(piece)
        self._state = "started"

    def send_bulk(self, image: MemoryImage) -> None:
        """The first round: every page of every block, in one PART section."""
        self._expect("started", "send_bulk")
        self._check_layout(image)
        self._pages_total = self.stats.total // self.page_size
        self._open_section(end=False)
        for blk in image.blocks:
            self._send_block_pages(blk, None)
        self._close_round()
        self._close_section(end=False)
        self._destination = image
        self._state = "bulk-done"

    def send_iteration(self, image: MemoryImage, dirty: dict | None = None) -> int:
        """One more round after a bitmap sync: a PART with the pages of ``image``
        that differ from what the destination holds, or, with ``dirty`` ({block
        name: page numbers}), exactly those pages, as QEMU's dirty bitmap would
        list them (written pages, changed or not).  Returns the page count."""
        self._expect("bulk-done", "send_iteration")
        self.stats.dirty_sync_count += 1  # migration_bitmap_sync
        self._open_section(end=False)
        n = self._send_dirty(image, dirty)
        self._close_section(end=False)
        self._destination = image
        return n

    def complete(self, image: MemoryImage | None = None, dirty: dict | None = None) -> int:
        """ram_save_complete: the final bitmap sync, the last dirty pages with
        ``last_stage`` set (no XBZRLE cache updates), EOS; then the template's
        remaining sections, EOF and VMDESCRIPTION.  Returns the dirty page count."""
        self._expect("bulk-done", "complete")
        self.stats.dirty_sync_count += 1
        self.last_stage = True
        self._open_section(end=True)
        n = self._send_dirty(image, dirty) if image is not None else 0
        self._close_section(end=True)
        w = self.sink.write
        if self.template is not None:
            for piece in self.template.after_ram:
                w(piece)
        w(writer.eof())
        if self.template is not None and self.template.vmdescription:
            w(self.template.vmdescription)
        self.sink.flush()
        self._state = "done"
        if self.compressor is not None:
            self._close_compressor()
        return n

    def close(self) -> None:
        if self.compressor is not None:
            self._close_compressor()

    def _close_compressor(self) -> None:
        close = getattr(self.compressor, "close", None)
        if close:
            close()
        self.compressor = None

    def _expect(self, state: str, what: str) -> None:
        if self._state != state:
            raise RuntimeError(f"Encoder.{what}() called in state {self._state}")

    def _check_layout(self, image: MemoryImage) -> None:
        image.check_same_vm(self.first)

    def _eos(self) -> bytes:
        return RAM_HEADER.pack(RAM_EOS)

    def _open_section(self, end: bool) -> None:
        self._section_end = end
        self.sink.write(writer.section_part(self.section_id, end=end))
        if not end:
            self.stats.part_sections += 1

    def _close_section(self, end: bool) -> None:
        self.sink.write(self._eos() + writer.footer(self.section_id))
        if not end:
            # ram_save_iterate counts its EOS; setup and complete do not.
            self._account(_HEADER_SIZE)

    def _account(self, nbytes: int) -> None:
        self.stats.transferred += nbytes
        if self._section_end:
            self.stats.downtime_bytes += nbytes
        else:
            self.stats.precopy_bytes += nbytes

    def _close_round(self) -> None:
        # find_dirty_block on wrap-around: after the first round XBZRLE takes over.
        self.stats.iterations += 1
        if self.cache is not None:
            self.xbzrle_enabled = True

    def _tick(self, n: int) -> None:
        self._pages_done += n
        self.stats.pages_handled += n
        if self.xbzrle_enabled:
            self.stats.xbzrle_pages_handled += n
        if self.progress is not None:
            self.progress(self._pages_done, self._pages_total)

    # --- record heads ----------------------------------------------------------------------

    def _head(self, block: str, addr: int, kind: int) -> bytes:
        """Header (+ block name unless CONTINUE) of a page record; moves the
        CONTINUE context (save_page_header)."""
        if block == self.last_sent_block:
            return RAM_HEADER.pack(addr | kind | RAM_CONTINUE)
        self.last_sent_block = block
        name = block.encode("latin-1")
        return RAM_HEADER.pack(addr | kind) + IDSTR_LENGTH.pack(len(name)) + name

    # --- rounds ------------------------------------------------------------------------

    def _send_dirty(self, image: MemoryImage, dirty: dict | None = None) -> int:
        self._check_layout(image)
        dest = self._destination
        assert dest is not None  # send_bulk set it
        ps = self.page_size
        total_dirty = 0
        dirty_sets = []
        if dirty is not None:
            unknown = set(dirty) - {b.name for b in image.blocks}
            if unknown:
                raise UsageError(f"dirty pages for unknown blocks: {sorted(unknown)}")
        for blk, old in zip(image.blocks, dest.blocks):
            if dirty is None:
                pages = _differing_pages(old.data, blk.data, ps)
            else:
                pages = np.unique(np.asarray(dirty.get(blk.name, ()), dtype=np.int64))
                if len(pages) and (pages[0] < 0 or pages[-1] >= blk.used_length // ps):
                    raise UsageError(f"dirty page outside block {blk.name}")
            dirty_sets.append(pages)
            total_dirty += len(pages)
        self._pages_total = self._pages_done + total_dirty
        for blk, pages in zip(image.blocks, dirty_sets):
            if len(pages):
                self._send_block_pages(blk, pages)
        self._close_round()
        return total_dirty

    def _send_block_pages(self, blk, pages: np.ndarray | None) -> None:
        """Send ``pages`` (page numbers, ascending; None = all) of one block.
        Zero-page detection of the next batch runs in a helper thread while
        this one writes (numpy reductions and writev release the GIL)."""
        ps = self.page_size
        npages = blk.used_length // ps if pages is None else len(pages)
        if npages == 0:
            return
        slow = self.xbzrle_enabled or self.compressor is not None
        if pages is None and not slow and DIRECT and write_pages is not None and self.sink.reserve(0) is not None:
            self._send_block_direct(blk, npages)
            return
        batches = []
        for s in range(0, npages, BATCH_PAGES):
            if pages is None:
                batches.append(np.arange(s, min(npages, s + BATCH_PAGES), dtype=np.int64))
            else:
                batches.append(pages[s : s + BATCH_PAGES])
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(_zero_mask, blk.data, batches[0], ps) if PIPELINE else None
            for k, batch in enumerate(batches):
                if ahead is not None:
                    zero = ahead.result()
                    if k + 1 < len(batches):
                        ahead = pool.submit(_zero_mask, blk.data, batches[k + 1], ps)
                else:
                    zero = _zero_mask(blk.data, batch, ps)
                if slow:
                    self._send_batch_slow(blk, batch, zero)
                else:
                    self._send_batch_plain(blk, batch, zero)
                self._tick(len(batch))

    def _send_block_direct(self, blk, npages: int) -> None:
        """Every page of a block as ZERO and PAGE records written by the compiled
        ``write_pages`` straight from the image (headers into a small buffer, pages as
        iovecs: no Python object per page, no copy), at offsets the sink reserves (-1: in
        order, a pipe); the zero pages of the next batch are found (numpy, GIL released)
        on a helper thread meanwhile.  The same bytes as ``_send_batch_plain``."""
        ps = self.page_size
        data = blk.data
        first = 0
        if blk.name != self.last_sent_block:
            # The first record names the block: the numpy path writes it.
            one = np.zeros(1, np.int64)
            self._send_batch_plain(blk, one, _zero_mask(data, one, ps))
            self._tick(1)
            first = 1
        if first == npages:
            return
        step = BATCH_PAGES
        glue = bytearray(step * _ZERO_RECORD)  # headers and fills of one batch
        write = write_pages
        assert write is not None  # checked by the caller
        fd = self.sink.fd

        def zeros(s: int) -> np.ndarray:
            return zero_page_mask(data[s * ps : min(npages, s + step) * ps], ps)

        starts = list(range(first, npages, step))
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(zeros, first)
            for k, s in enumerate(starts):
                zero = ahead.result()
                if k + 1 < len(starts):
                    ahead = pool.submit(zeros, starts[k + 1])
                n = len(zero)
                nz = int(np.count_nonzero(zero))
                size = nz * _ZERO_RECORD + (n - nz) * (_HEADER_SIZE + ps)
                offset = self.sink.reserve(size)
                assert offset is not None  # a sink that writes at offsets (checked by the caller)
                write(
                    fd,
                    offset,
                    data,
                    s,
                    n,
                    ps,
                    _HEADER_SIZE,
                    RAM_ZERO | RAM_CONTINUE,
                    _ZERO_RECORD,
                    RAM_PAGE | RAM_CONTINUE,
                    zero.data,
                    glue,
                )
                self.stats.duplicate += nz
                self.stats.normal += n - nz
                self._account(size)
                self._tick(n)

    def _send_batch_plain(self, blk, batch: np.ndarray, zero: np.ndarray) -> None:
        """ZERO and PAGE records only: headers built with numpy, pages written
        straight from the image with writev (no copy of page data).  The bytes
        between two page payloads (a PAGE header, preceded by the ZERO records
        since the last page) form one buffer: two buffers per PAGE record."""
        ps = self.page_size
        data = blk.data
        head: list = []
        if blk.name != self.last_sent_block:
            # The first record names the block.
            p = int(batch[0])
            if zero[0]:
                head.append(self._head(blk.name, p * ps, RAM_ZERO) + b"\0")
                self.stats.duplicate += 1
            else:
                head.append(self._head(blk.name, p * ps, RAM_PAGE))
                head.append(data[p * ps : (p + 1) * ps])
                self.stats.normal += 1
            self._account(sum(len(b) for b in head))
            self.sink.writev(head)
            batch = batch[1:]
            zero = zero[1:]
        n = len(batch)
        if not n:
            return
        flags = np.where(zero, RAM_ZERO | RAM_CONTINUE, RAM_PAGE | RAM_CONTINUE).astype(np.uint64)
        headers = ((batch.astype(np.uint64) * np.uint64(ps)) | flags).astype(_BE64).view(np.uint8)
        glue_len = np.where(zero, _ZERO_RECORD, _HEADER_SIZE)
        ends = np.cumsum(glue_len)
        glue = np.zeros(int(ends[-1]), np.uint8)
        starts = ends - glue_len
        glue[(starts[:, None] + np.arange(_HEADER_SIZE)).reshape(-1)] = headers
        page_idx = np.flatnonzero(~zero)
        npage = len(page_idx)
        cuts = np.empty(npage + 2, np.int64)
        cuts[0] = 0
        cuts[1 : npage + 1] = starts[page_idx] + _HEADER_SIZE
        cuts[npage + 1] = len(glue)
        gv = glue.data
        dv = data.data  # the array's buffer, not a copy
        c = cuts.tolist()
        offs = (batch[page_idx] * ps).tolist()
        iov: list = [None] * (2 * npage + 1)
        iov[0::2] = [gv[a:b] for a, b in zip(c, c[1:])]
        iov[1::2] = [dv[o : o + ps] for o in offs]
        lengths = np.empty(2 * npage + 1, np.int64)
        lengths[0::2] = np.diff(cuts)
        lengths[1::2] = ps
        if not lengths[-1]:
            iov.pop()
            lengths = lengths[:-1]
        nz = n - npage
        self.stats.duplicate += nz
        self.stats.normal += npage
        self._account(len(glue) + npage * ps)
        self.sink.writev(iov, lengths)

    def _send_batch_slow(self, blk, batch: np.ndarray, zero: np.ndarray) -> None:
        """Page by page, in ram_save_target_page's order: compression
        (save_compress_page), zero page (save_zero_page), then XBZRLE or a normal
        page (ram_save_page)."""
        ps = self.page_size
        data = blk.data
        pages = batch.tolist()
        compress = self.compressor is not None and not self.xbzrle_enabled
        compressed = self._compress_ahead(blk, pages, zero) if compress else iter(())
        age = self.stats.dirty_sync_count
        iov: list = []
        for i, p in enumerate(pages):
            addr = p * ps
            if compress and blk.name == self.last_sent_block:
                # A compression thread's work (do_compress_ram_page): zero pages
                # stay ZERO records, the rest become one zlib stream each.
                if zero[i]:
                    self._zero_record(blk, addr, iov)
                else:
                    self._compressed_record(blk, addr, next(compressed), iov)
            elif zero[i]:
                self._zero_record(blk, addr, iov)
                if self.xbzrle_enabled:
                    # xbzrle_cache_zero_page: a stale cached copy must not survive.
                    assert self.cache is not None  # XBZRLE is enabled only with a cache
                    self.cache.insert(blk.ram_addr + addr, self._zero_page, age)
            else:
                page = data[addr : addr + ps]
                if not self.xbzrle_enabled or self._save_xbzrle_page(blk, addr, page, age, iov) is None:
                    self._normal_record(blk, addr, page, iov)
        self.sink.writev(iov)

    def _compress_ahead(self, blk, pages: list, zero: np.ndarray):
        """The compressed pages of this batch, in order, from the compression
        threads: every non-zero page except a block's first one while the block
        is not last_sent_block (save_compress_page sends that one uncompressed)."""
        assert self.compressor is not None  # called only when compressing
        ps = self.page_size
        data = blk.data
        todo = []
        named = blk.name == self.last_sent_block
        for i, p in enumerate(pages):
            if named and not zero[i]:
                todo.append(data[p * ps : (p + 1) * ps])
            named = True
        return iter(self.compressor.map(todo))

    def _zero_record(self, blk, addr: int, iov: list) -> None:
        rec = self._head(blk.name, addr, RAM_ZERO) + b"\0"
        iov.append(rec)
        self.stats.duplicate += 1
        self._account(len(rec))

    def _normal_record(self, blk, addr: int, page, iov: list) -> None:
        head = self._head(blk.name, addr, RAM_PAGE)
        iov.append(head)
        iov.append(page)
        self.stats.normal += 1
        self._account(len(head) + self.page_size)

    def _compressed_record(self, blk, addr: int, z: bytes, iov: list) -> None:
        head = self._head(blk.name, addr, RAM_COMPRESS_PAGE) + _COMPRESS_LEN.pack(len(z))
        iov.append(head)
        iov.append(z)
        st = self.stats
        st.compression_pages += 1
        # update_compress_thread_counts: the record minus its 8-byte header.
        st.compressed_size += len(head) - _HEADER_SIZE + len(z)
        self._account(len(head) + len(z))

    def _save_xbzrle_page(self, blk, addr: int, page: np.ndarray, age: int, iov: list) -> int | None:
        """save_xbzrle_page: None means "send a normal page"."""
        from ..codecs.xbzrle import xbzrle_encode

        st = self.stats
        cache = self.cache
        assert cache is not None  # XBZRLE is enabled only with a cache
        current_addr = blk.ram_addr + addr
        if not cache.is_cached(current_addr, age):
            st.xbzrle_cache_miss += 1
            if not self.last_stage:
                cache.insert(current_addr, page, age)
            return None
        st.xbzrle_pages += 1
        prev = cache.get(current_addr)
        assert prev is not None  # a hit: the slot holds a page
        encoded = xbzrle_encode(prev, page, self.page_size)
        if not self.last_stage and encoded != b"":
            # The cache follows what the destination holds, except for
            # skipped (unchanged) pages.
            prev[:] = page
        if encoded == b"":
            st.xbzrle_skipped += 1
            return 0
        if encoded is None:
            st.xbzrle_overflow += 1
            st.xbzrle_bytes += self.page_size
            return None
        head = self._head(blk.name, addr, RAM_XBZRLE)
        rec = head + bytes([g.XBZRLE_ENCODING_FLAG]) + _XBZRLE_LEN.pack(len(encoded))
        iov.append(rec)
        iov.append(encoded)
        n = len(rec) + len(encoded)
        st.xbzrle_records += 1
        st.xbzrle_bytes += n - _HEADER_SIZE
        self._account(n)
        return 1


def _zero_mask(data: np.ndarray, pages: np.ndarray, ps: int) -> np.ndarray:
    """True for the pages (of ``pages``) that are all zero (buffer_is_zero)."""
    if len(pages) == 0:
        return np.zeros(0, bool)
    first, last = int(pages[0]), int(pages[-1])
    if last - first + 1 == len(pages):  # a contiguous stretch: no gather
        return zero_page_mask(data[first * ps : (last + 1) * ps], ps)
    rows = _rows(data, ps)
    return ~rows[pages].any(axis=1)


def _rows(buf: np.ndarray, ps: int) -> np.ndarray:
    if ps % 8 == 0 and buf.ctypes.data % 8 == 0:
        return buf.view(np.uint64).reshape(-1, ps // 8)
    return buf.reshape(-1, ps)


def _differing_pages(old: np.ndarray, new: np.ndarray, ps: int) -> np.ndarray:
    """Page numbers where ``new`` differs from ``old`` (the dirty set relative to
    what the destination holds), in batches to bound temporary memory."""
    out = []
    step = BATCH_PAGES * ps
    for s in range(0, len(new), step):
        a = _rows(old[s : s + step], ps)
        b = _rows(new[s : s + step], ps)
        idx = np.flatnonzero((a != b).any(axis=1))
        if len(idx):
            out.append(idx + s // ps)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def encode_stream(
    images: Sequence[MemoryImage],
    sink,
    *,
    xbzrle_cache_size: int = 0,
    compress_threads: int = 0,
    compress_level: int = 1,
    template=None,
    final_in_end: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RamStats:
    """Encode ``images`` (the first is the bulk stage, each later one an iteration)
    into ``sink``.  With ``final_in_end`` the last later image is sent in the END
    section (the stop-and-copy phase); otherwise END carries no pages."""
    if not images:
        raise UsageError("no memory image to encode")
    enc = Encoder(
        sink,
        images[0],
        xbzrle_cache_size=xbzrle_cache_size,
        compress_threads=compress_threads,
        compress_level=compress_level,
        template=template,
        progress=progress,
    )
    try:
        for img in images[1:]:
            enc._check_layout(img)
        enc.start()
        enc.send_bulk(images[0])
        later = list(images[1:])
        last = later.pop() if (final_in_end and later) else None
        for img in later:
            enc.send_iteration(img)
        enc.complete(last)
    finally:
        enc.close()
    return enc.stats
