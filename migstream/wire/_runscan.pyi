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

def write_pages(
    fd: int,
    offset: int,
    data: Buffer,
    first: int,
    count: int,
    page_size: int,
    header_size: int,
    zero_tag: int,
    zero_size: int,
    page_tag: int,
    zero: Buffer,
    glue: Buffer,
    /,
) -> int:
    """Bytes written: the bulk ZERO/PAGE records of pages first..first+count-1 written to fd at offset with
    pwritev (offset -1: writev at the file position), pages straight from data (zero[i] != 0: page first+i is a
    ZERO record); headers and fills in glue."""

def write_run(
    fd: int,
    data: Buffer,
    starts: Buffer,
    kinds: Buffer,
    page_kind: int,
    page_size: int,
    offset: int,
    hole_min: int,
    zero_page: Buffer,
    /,
) -> bool:
    """The pages of a bulk run written to fd with pwritev (short zero stretches as zero pages, longer ones left);
    False, nothing written, when a ZERO record has a non-zero fill byte."""

def preallocate(fd: int, offset: int, length: int, /) -> bool:
    """fallocate() the range about to be written; False when the file system cannot."""
