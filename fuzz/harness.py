"""The fuzzing contract, shared by the atheris harness, the structure-aware
fuzzer and the regression tests (importable without atheris).

For any input, decoding either succeeds or raises the library's own StreamError
carrying a byte offset inside the input; nothing else may escape.
"""

from __future__ import annotations

import io

from migstream.decode.decoder import StreamDecoder
from migstream.decode.description import load_description
from migstream.errors import StreamError
from migstream.events import NEED_DATA
from migstream.events import PageRecord
from migstream.events import PageRun

PAGE_SIZE_OPTIONS = (None, 4096, 1024, 65536)


def decode(data: bytes, mode: int = 0, description: dict | None = None) -> list:
    """Feed ``data`` as ``mode`` says (bits 0-1: whole, in two or three pieces, or
    in chunks whose size bits 2-5 pick; bits 6-7: a --page-size option) and return every event."""
    dec = StreamDecoder(page_size=PAGE_SIZE_OPTIONS[(mode >> 6) & 3], description=description)
    size = len(data)
    if mode & 3 == 0 or size < 2:
        chunks = [data]
    elif mode & 3 == 1:  # two pieces
        cut = (mode * 7919) % size
        chunks = [data[:cut], data[cut:]]
    elif mode & 3 == 2:  # pieces of 1 B .. 32 KiB, at most 512 of them (fuzzing speed)
        step = max(1 << ((mode >> 2) & 15), size // 512)
        chunks = [data[i : i + step] for i in range(0, size, step)]
    else:  # three pieces
        a, b = sorted(((mode * 7919) % size, (mode * 104729) % size))
        chunks = [data[:a], data[a:b], data[b:]]
    events = []
    for chunk in chunks:
        if chunk:
            dec.feed(chunk)
        while (ev := dec.next_event()) is not NEED_DATA and ev is not None:
            events.append(_checked(ev))
    dec.feed(b"")
    while (ev := dec.next_event()) is not None:
        assert ev is not NEED_DATA, "NEED_DATA after the end of input"
        events.append(_checked(ev))
    return events


def _checked(ev):
    # Derived properties must hold for anything the decoder emits.
    if type(ev) is PageRun:
        assert ev.count == len(ev.starts) == len(ev.kinds) >= 2
        last = next(
            iter(
                PageRun(
                    ev.offset + ev.starts[-1],
                    ev.block,
                    ev.addr,
                    1,
                    ev.page_size,
                    ev.data[ev.starts[-1] :],
                    [0],
                    ev.kinds[-1:],
                ).records()
            )
        )
        assert last.offset + last.size == ev.offset + len(ev.data)
    elif type(ev) is PageRecord:
        assert ev.size > 0 and ev.payload_offset > ev.offset
    return ev


def check(data: bytes, mode: int = 0) -> StreamError | None:
    """Decode under the contract; returns the StreamError (or None on success).
    Any other exception propagates: that is a finding.  When the input ends with
    a VMDESCRIPTION, it is decoded a second time the way front ends read seekable
    files: with that (untrusted) JSON framing the device sections."""
    err = _check(data, mode, None)
    if mode & 3:
        # However the input is cut into chunks, the outcome is the same.
        whole = _outcome(data, mode & ~3)
        assert _outcome(data, mode) == whole, "chunked feeding changed the outcome"
    found = load_description(io.BytesIO(data), len(data))
    if found is not None:
        _check(data, mode, found[1])
    return err


def _outcome(data: bytes, mode: int) -> list:
    """Record-level events (runs expanded) and the error, comparable across feedings."""
    out: list = []
    try:
        for ev in decode(data, mode):
            if type(ev) is PageRun:
                out += [("PageRecord", r.offset) for r in ev.records()]
            else:
                out.append((type(ev).__name__, ev.offset))
    except StreamError as exc:
        out.append(("error", exc.offset, exc.message))
    return out


def _check(data: bytes, mode: int, description: dict | None) -> StreamError | None:
    try:
        decode(data, mode, description)
    except StreamError as exc:
        if not (isinstance(exc.offset, int) and 0 <= exc.offset <= len(data)):
            raise AssertionError(f"StreamError offset {exc.offset!r} outside the input of {len(data)} bytes") from exc
        return exc
    return None


def one_input(raw: bytes) -> None:
    """libFuzzer entry point: the first byte is the feeding mode."""
    if raw:
        check(raw[1:], raw[0])


def check_extract(data: bytes, workdir) -> None:
    """The extract job on ``data`` (a seekable file, so with its own description)
    into ``workdir``: a stream fault ends up in the result, except input that is not
    a stream at all (its file header is wrong: StreamError in the first 8 bytes,
    before anything is written); bad local conditions are UsageError; only a file
    system refusing a huge sparse offset (EFBIG) may surface as OSError (the CLI's
    exit code 3).  Anything else is a finding."""
    import errno
    import shutil
    from pathlib import Path

    from migstream.errors import StreamError
    from migstream.errors import UsageError
    from migstream.tools.extract import extract

    workdir = Path(workdir)
    src, out = workdir / "input.mig", workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    src.write_bytes(data)
    try:
        extract(str(src), str(out))
    except UsageError:
        pass
    except StreamError as exc:
        if exc.offset >= 8:
            raise
        assert not out.exists(), "a non-stream left an output directory"
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
