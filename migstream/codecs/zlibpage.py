"""COMPRESS_PAGE payloads: one self-contained zlib stream per page, as QEMU 7.2's
compression threads write them (``compress_page``, ``PageCompressor``) and as its
loader inflates them (``inflate_page``, ``compress_bound``).

QEMU (migration/ram.c ``compress_threads_save_setup`` / ``do_compress_ram_page``,
migration/qemu-file.c ``qemu_put_compression_data``) gives each thread one z_stream
set up once with ``deflateInit(stream, compress-level)`` (windowBits 15, memLevel 8,
default strategy), and per page does ``deflateReset`` then a single
``deflate(Z_FINISH)`` over a private copy of the page, into a buffer of at least
compressBound(page) bytes.  deflateReset leaves no state behind, so each page's
output is exactly what a fresh stream at that level produces: ``zlib.compress(page,
level)`` (same defaults).  The record carries it after a be32 length.

Checked byte for byte against all 2775 COMPRESS_PAGE records of the committed
QEMU 7.2 capture (level 1, QEMU's default) and, through the zlib library itself
driven as QEMU drives it (one stream, deflateReset per page), for levels 0-9
(tests/unit/test_zlibpage.py).  Both sides must use the same zlib (Debian 12: 1.2.13).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

# Pages per task handed to a thread: enough that the pool's per-task cost
# (tens of µs) is small next to compressing them (about 50 µs per 4 KiB page at
# level 1), few enough to keep every thread busy on short inputs.
BATCH_PAGES = 32


def compress_page(data, level: int) -> bytes:
    """The zlib stream QEMU 7.2 puts on the wire for this page at this level."""
    return zlib.compress(data, level)


def _compress_batch(pages: list, level: int) -> list[bytes]:
    # zlib.compress releases the GIL while deflating, so batches run in parallel.
    compress = zlib.compress
    return [compress(p, level) for p in pages]


class PageCompressor:
    """Compresses pages on ``threads`` threads, QEMU's compress-threads.

    ``map(pages)`` yields ``compress_page(p, level)`` for each page, in input
    order; pages are any buffers (bytes, memoryview, numpy rows) and must stay
    unchanged until their result is yielded.  At most a few batches per thread
    are in flight, so memory stays flat on long inputs.
    """

    def __init__(self, threads: int, level: int, *, batch_pages: int = BATCH_PAGES) -> None:
        if threads < 1:
            raise ValueError(f"compress threads must be at least 1, got {threads}")
        if not 0 <= level <= 9:  # migrate-set-parameters compress-level range
            raise ValueError(f"compress level {level} outside 0..9")
        self.threads = threads
        self.level = level
        self.batch_pages = batch_pages
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            # Imported here: the decoder imports this module for inflate_page, and
            # concurrent.futures (with logging) costs every command ~4 ms of start-up.
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="compress")
        return self._pool

    def map(self, pages: Iterable) -> Iterator[bytes]:
        level = self.level
        pool = self._executor()
        window = 2 * self.threads
        pending: deque = deque()
        batch: list = []
        for page in pages:
            batch.append(page)
            if len(batch) == self.batch_pages:
                pending.append(pool.submit(_compress_batch, batch, level))
                batch = []
                if len(pending) >= window:
                    yield from pending.popleft().result()
        if batch:
            pending.append(pool.submit(_compress_batch, batch, level))
        while pending:
            yield from pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PageCompressor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compress_bound(n: int) -> int:
    """zlib's compressBound(), the loader's limit for COMPRESS_PAGE lengths."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def inflate_page(data, page_size: int) -> bytes:
    """One COMPRESS_PAGE payload: a complete zlib stream of exactly one page.
    Raises zlib.error otherwise (the loader's wording is added in decode/pages.py)."""
    d = zlib.decompressobj()
    out = d.decompress(bytes(data), page_size)
    if not d.eof or len(out) != page_size:
        raise zlib.error(
            f"zlib stream inflates to {len(out)} bytes"
            + ("" if d.eof else " and does not end")
            + f", expected {page_size}"
        )
    return out
