"""What encode, transcode and rewrite share: sizes, the output file, the accounting."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

from ..errors import UsageError
from .jsonout import dumps


def parse_size(text: str) -> int:
    """``67108864``, ``64M``, ``64MiB``, ``1G`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"not a size: {text!r} (e.g. 67108864, 64M, 1G)")
    return int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))


@contextmanager
def output_fd(output: str):
    """A file descriptor for OUTPUT (``-``: stdout, never a terminal).  A file is
    written beside the target and renamed when the block succeeds, so a failed run
    never leaves a file that looks like a complete stream."""
    if output == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a binary stream to a terminal (use -o FILE or a pipe)")
        sys.stdout.flush()
        yield sys.stdout.fileno()
        return
    tmp = f"{output}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, output)


def report_stats(stats, output: str, *, mapped_ram: bool, stats_json, json_out: bool) -> None:
    """The accounting at the end of a run: --stats-json file, then JSON or text on
    stdout (stderr when the stream itself went to stdout)."""
    doc = stats.as_dict()
    if mapped_ram:
        doc["mapped_ram"] = file_allocation(output)
    if stats_json:
        stats_json.write_text(dumps(doc) + "\n")
    out = sys.stderr if output == "-" else sys.stdout
    if json_out:
        print(dumps(doc), file=out)
    else:
        _print_stats(doc, out)


def _print_stats(doc: dict, out) -> None:
    ram = doc["ram"]
    lines = [
        f"transferred      {ram['transferred']:,} bytes (stream {doc['stream_bytes']:,} bytes)",
        f"pages            normal {ram['normal']:,} ({ram['normal_bytes']:,} bytes), duplicate (zero) "
        f"{ram['duplicate']:,}",
        f"iterations       {doc['iterations']} (PART sections {doc['part_sections']}), "
        f"dirty-sync-count {ram['dirty_sync_count']}",
    ]
    if "xbzrle_cache" in doc:
        x = doc["xbzrle_cache"]
        lines.append(
            f"xbzrle           pages {x['pages']:,}, bytes {x['bytes']:,}, cache-miss {x['cache_miss']:,}, "
            f"cache-miss-rate {x['cache_miss_rate']:.4f}, overflow {x['overflow']:,}"
        )
    if "compression" in doc:
        c = doc["compression"]
        lines.append(
            f"compression      pages {c['pages']:,}, compressed-size {c['compressed_size']:,}, "
            f"rate {c['compression_rate']:.2f}"
        )
    if "mapped_ram" in doc:
        f = doc["mapped_ram"]
        lines.append(f"mapped-ram file  {f['file_bytes']:,} bytes, {f['allocated_bytes']:,} bytes allocated (sparse)")
    print("\n".join(lines), file=out)


def check_mapped_ram_options(output: str, xbzrle_cache: int, compress_threads: int) -> None:
    """What QEMU refuses with mapped-ram (migration/options.c migrate_caps_check),
    and the output a file: URI needs."""
    if output == "-":
        raise UsageError("--mapped-ram writes pages at fixed file offsets: give a regular file with -o, not -")
    if xbzrle_cache:
        raise UsageError("--mapped-ram excludes --xbzrle-cache (QEMU: mapped-ram is incompatible with xbzrle)")
    if compress_threads:
        raise UsageError("--mapped-ram excludes --compress-threads (QEMU: mapped-ram is incompatible with compression)")


def file_allocation(path: str) -> dict:
    st = os.stat(path)
    return {"file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512}
