"""What an encoding counted: ``RamStats`` (query-migrate's RAM, xbzrle-cache and
compression fields, QEMU 7.2) and ``CountingSink``, which counts the stream's bytes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RamStats:
    """query-migrate's RAM, xbzrle-cache and compression fields (QEMU 7.2)."""

    page_size: int = 4096
    total: int = 0
    transferred: int = 0
    precopy_bytes: int = 0
    downtime_bytes: int = 0
    duplicate: int = 0
    normal: int = 0
    dirty_sync_count: int = 0
    iterations: int = 0  # rounds over RAM: the bulk stage and each later image
    part_sections: int = 0
    stream_bytes: int = 0  # the whole output, device state included
    pages_handled: int = 0  # target pages visited (rs->target_page_count)
    xbzrle_cache_size: int = 0
    xbzrle_pages: int = 0
    xbzrle_bytes: int = 0
    xbzrle_cache_miss: int = 0
    xbzrle_overflow: int = 0
    xbzrle_records: int = 0
    xbzrle_skipped: int = 0
    xbzrle_pages_handled: int = 0  # pages visited while XBZRLE was on
    compression_pages: int = 0
    compressed_size: int = 0
    compress_threads: int = 0

    @property
    def normal_bytes(self) -> int:
        return self.normal * self.page_size

    def as_dict(self) -> dict:
        """The accounting as JSON: query-migrate's field names in snake_case
        (``dirty-sync-count`` is ``dirty_sync_count``; docs/json.md)."""
        ram = {
            "total": self.total,
            "transferred": self.transferred,
            "duplicate": self.duplicate,
            "normal": self.normal,
            "normal_bytes": self.normal_bytes,
            "page_size": self.page_size,
            "dirty_sync_count": self.dirty_sync_count,
            "precopy_bytes": self.precopy_bytes,
            "downtime_bytes": self.downtime_bytes,
            "remaining": 0,
        }
        doc = {
            "ram": ram,
            "iterations": self.iterations,
            "part_sections": self.part_sections,
            "stream_bytes": self.stream_bytes,
        }
        if self.xbzrle_cache_size:
            handled = self.xbzrle_pages_handled
            doc["xbzrle_cache"] = {
                "cache_size": self.xbzrle_cache_size,
                "bytes": self.xbzrle_bytes,
                "pages": self.xbzrle_pages,
                "cache_miss": self.xbzrle_cache_miss,
                # QEMU computes both rates per sync period; here: over the whole run.
                "cache_miss_rate": round(self.xbzrle_cache_miss / handled, 6) if handled else 0,
                "encoding_rate": (
                    round(self.xbzrle_pages * self.page_size / self.xbzrle_bytes, 6) if self.xbzrle_bytes else 0
                ),
                "overflow": self.xbzrle_overflow,
            }
        if self.compress_threads:
            doc["compression"] = {
                "pages": self.compression_pages,
                "compressed_size": self.compressed_size,
                "busy": 0,
                "busy_rate": 0,
                "compression_rate": (
                    round(self.compression_pages * self.page_size / self.compressed_size, 6)
                    if self.compressed_size
                    else 0
                ),
            }
        return doc


class CountingSink:
    """Wraps a sink to count the bytes of the whole stream."""

    def __init__(self, sink, stats: RamStats) -> None:
        self.sink = sink
        self.stats = stats

    def write(self, data) -> None:
        self.stats.stream_bytes += len(data)
        self.sink.write(data)

    def writev(self, bufs, lengths=None) -> None:
        if lengths is None:
            lengths = np.fromiter((len(b) for b in bufs), np.int64, len(bufs))
        self.stats.stream_bytes += int(lengths.sum())
        self.sink.writev(bufs, lengths)

    def reserve(self, nbytes: int) -> int | None:
        """The inner sink's ``reserve`` (an offset its caller writes at, -1: in order),
        counted; None when the inner sink has no file descriptor (BytesSink)."""
        reserve = getattr(self.sink, "reserve", None)
        offset = reserve(nbytes) if reserve is not None else None
        if offset is not None:
            self.stats.stream_bytes += nbytes
        return offset

    @property
    def fd(self) -> int:
        return self.sink.fd

    def flush(self) -> None:
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()
