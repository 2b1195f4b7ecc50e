"""Types of the compiled record walk (migstream/wire/_runscan.c), which has no Python source."""

from typing_extensions import Buffer

def walk(
    buf: Buffer,
    pos: int,
    addr: int,
    page_size: int,
    cap: int,
    header_size: int,
    tag_a: int,
    size_a: int,
    kind_a: int,
    tag_b: int,
    size_b: int,
    kind_b: int,
    /,
) -> tuple[int, int, bytes, bytes]:
    """(count, end, starts as native int64 bytes, kinds): the run of page records at buf[pos]."""
