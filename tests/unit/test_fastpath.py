"""The decoder's fast path (derived readers, the compiled and the Python run walk)
equals plain construct."""

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from migstream.wire import build as w
from migstream.wire import grammar as g
from migstream.wire.fastpath import FixedField
from migstream.wire.fastpath import PrefixedField
from migstream.wire.fastpath import RamPlans
from support.reference import decoder_records
from support.reference import reference_records

F = g.RamFlag
BLOCKS = [("pc.ram", 256 * 4096), ("pc.bios", 16 * 4096), ("/rom@etc/acpi/tables", 8 * 4096)]


def test_plans_come_from_the_grammar():
    plans = RamPlans.for_page_size(8192)
    assert plans.fixed[F.PAGE] == 8192
    assert plans.fixed[F.ZERO] == 1
    assert plans.fixed[F.EOS] == 0
    assert isinstance(plans.plans[F.XBZRLE][0], FixedField)
    assert isinstance(plans.plans[F.XBZRLE][1], PrefixedField)
    assert plans.plans[F.XBZRLE][1].prefix.size == 2
    assert plans.plans[F.COMPRESS_PAGE][0].prefix.size == 4


def xbzrle_delta(rnd, page_size):
    # A valid delta: zero run, data run, ... within one page.
    out, pos = bytearray(), 0
    first = True
    while rnd.random() < 0.8:
        z = rnd.randint(0 if first else 1, 200)
        n = rnd.randint(1, 100)
        if pos + z + n > page_size:
            break
        for v in (z,):
            out += bytes([v]) if v < 0x80 else bytes([(v & 0x7F) | 0x80, v >> 7])
        out += bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
        out += rnd.randbytes(n)
        pos += z + n
        first = False
    return bytes(out)


def build_stream(ops, seed, page_size=4096):
    """A stream with a RAM START (MEM_SIZE), PARTs of the given records, END, EOF."""
    rnd = random.Random(seed)
    blocks = [(n, length * page_size // 4096) for n, length in BLOCKS]
    out = bytearray(w.file_header() + w.configuration("pc-i440fx-7.2"))
    out += w.section_start(1, "ram") + w.mem_size(blocks, page_size=page_size) + w.ram_record(F.EOS) + w.footer(1)
    last = None
    for part in ops:
        out += w.section_part(1)
        for kind, bidx, page in part:
            name, length = blocks[bidx]
            addr = (page % (length // page_size)) * page_size
            if kind == "flush":
                out += w.ram_record(F.MULTIFD_FLUSH, page_size=page_size)
                continue
            block = None if name == last else name
            last = name
            if kind == "page":
                out += w.ram_record(
                    F.PAGE, addr, block=block, page_size=page_size, payload={"data": rnd.randbytes(page_size)}
                )
            elif kind == "zero":
                out += w.ram_record(
                    F.ZERO, addr, block=block, page_size=page_size, payload={"fill": rnd.choice([0, 0, 0, 0x55])}
                )
            elif kind == "xbzrle":
                out += w.ram_record(
                    F.XBZRLE,
                    addr,
                    block=block,
                    page_size=page_size,
                    payload={"encoding": 1, "data": xbzrle_delta(rnd, page_size)},
                )
            elif kind == "compress":
                out += w.ram_record(
                    F.COMPRESS_PAGE,
                    addr,
                    block=block,
                    page_size=page_size,
                    payload={"data": zlib.compress(rnd.randbytes(64) * (page_size // 64))},
                )
        out += w.ram_record(F.EOS, page_size=page_size) + w.footer(1)
    out += w.section_part(1, end=True) + w.ram_record(F.EOS, page_size=page_size) + w.footer(1) + w.eof()
    return bytes(out)


record_op = st.tuples(
    st.sampled_from(["page", "page", "zero", "zero", "zero", "xbzrle", "compress", "flush"]),
    st.sampled_from([0, 0, 0, 1, 2]),
    st.integers(0, 300),
)
# Runs of consecutive same-kind records are what the fast path batches.
run_op = st.tuples(
    st.sampled_from(["page", "zero"]), st.sampled_from([0, 1]), st.integers(0, 200), st.integers(2, 80)
).map(lambda t: [(t[0], t[1], t[2] + i) for i in range(t[3])])
part = st.lists(st.one_of(record_op.map(lambda r: [r]), run_op), max_size=12).map(
    lambda groups: [r for grp in groups for r in grp]
)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(part, min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
    page_size=st.sampled_from([4096, 8192, 1024]),
)
def test_decoder_equals_plain_construct(ops, seed, page_size):
    data = build_stream(ops, seed, page_size)
    ref = reference_records(data, page_size)
    assert decoder_records(data, page_size=page_size) == ref


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(part, min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(1, 10**6), max_size=30),
)
def test_chunking_does_not_change_events(ops, seed, cuts):
    data = build_stream(ops, seed)
    points = sorted({c % len(data) for c in cuts} - {0})
    chunks = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    assert decoder_records(data, chunks=chunks) == reference_records(data)


def test_long_runs_are_batched():
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import PageRun

    data = build_stream([[("zero", 0, i) for i in range(250)] + [("page", 0, i) for i in range(200)]], 1)
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    runs = [ev for ev in dec if isinstance(ev, PageRun)]
    assert sum(r.count for r in runs) >= 440
    assert max(r.count for r in runs) >= 64


# --- the run walk: compiled (migstream/wire/_runscan.c) and Python --------------------------


def test_compiled_walk_is_built():
    # pip builds it (pyproject.toml, ext-modules) wherever a C compiler is present (CI installs gcc); without it
    # every bulk stage would silently take the slower Python walk.
    from migstream.wire.fastpath import RunWalker

    assert RunWalker(RamPlans.for_page_size(4096)).compiled


def _run_bytes(rnd, kinds, addr, page_size):
    out = bytearray()
    for i, kind in enumerate(kinds):
        flag = F.PAGE if kind == "page" else F.ZERO
        payload = {"data": rnd.randbytes(page_size)} if kind == "page" else {"fill": rnd.choice([0, 0x55])}
        out += w.ram_record(flag | F.CONTINUE, addr + i * page_size, page_size=page_size, payload=payload)
    return out


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["page", "zero"]), max_size=150).map(
        lambda ks: ks + ["zero"] * (len(ks) % 3 * 40)
    ),  # long one-kind stretches too
    page_size=st.sampled_from([1024, 4096, 8192]),
    lead=st.integers(0, 20),
    page0=st.integers(0, 50),
    cap=st.integers(0, 400),
    cut=st.integers(0, 2**20),
    flip=st.integers(0, 2**20),
    seed=st.integers(0, 2**32),
)
def test_compiled_walk_equals_python_walk(kinds, page_size, lead, page0, cap, cut, flip, seed):
    from migstream.wire.fastpath import RunWalker

    rnd = random.Random(seed)
    addr = page0 * page_size
    buf = bytearray(rnd.randbytes(lead)) + _run_bytes(rnd, kinds, addr, page_size)
    if flip % 3 == 0 and len(buf) > lead:  # a damaged header or payload somewhere
        buf[lead + flip % (len(buf) - lead)] ^= 0x40
    if cut % 2 == 0:  # truncated inside the run
        del buf[lead + cut % (len(buf) - lead + 1) :]
    plans = RamPlans.for_page_size(page_size)
    compiled = RunWalker(plans)
    python = RunWalker(plans, compiled=False)
    got = compiled.walk(memoryview(bytes(buf)), lead, addr, cap)
    want = python.walk(memoryview(bytes(buf)), lead, addr, cap)
    assert (got[0], got[1], list(got[2]), bytes(got[3])) == (want[0], want[1], list(want[2]), bytes(want[3]))
    assert got[0] <= cap


def test_walk_stops_at_a_record_for_another_page():
    # The run ends where a header does not match "next page + tag" (here: a page skipped).
    from migstream.wire.fastpath import RunWalker

    rnd = random.Random(3)
    buf = _run_bytes(rnd, ["page", "zero", "zero"], 0, 4096) + _run_bytes(rnd, ["zero"], 4 * 4096, 4096)
    for walker in (RunWalker(RamPlans.for_page_size(4096)), RunWalker(RamPlans.for_page_size(4096), compiled=False)):
        n, end, starts, kinds = walker.walk(memoryview(bytes(buf)), 0, 0, 100)
        assert n == 3 and list(starts) == [0, 4104, 4113] and end == 4122
        assert bytes(kinds) == bytes([F.PAGE, F.ZERO, F.ZERO])


def test_runs_are_bounded_in_length(monkeypatch):
    # A bulk stage longer than MAX_RUN_RECORDS comes as several runs, nothing lost.
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import PageRun
    from migstream.wire import fastpath

    monkeypatch.setattr(fastpath, "MAX_RUN_RECORDS", 100)
    data = build_stream([[("zero", 0, i) for i in range(250)]], 1)
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    runs = [ev for ev in dec if isinstance(ev, PageRun)]
    assert max(r.count for r in runs) == 100
    assert decoder_records(data) == reference_records(data)


def test_compiled_walk_grows_its_tables():
    # More records than the compiled walk's first allocation (4096).
    from migstream.wire.fastpath import RunWalker

    rnd = random.Random(5)
    kinds = ["zero"] * 9000 + ["page"] * 3 + ["zero"] * 2000
    buf = memoryview(bytes(_run_bytes(rnd, kinds, 0, 1024)))
    plans = RamPlans.for_page_size(1024)
    got = RunWalker(plans).walk(buf, 0, 0, 20000)
    want = RunWalker(plans, compiled=False).walk(buf, 0, 0, 20000)
    assert got[0] == 11003 and got[1] == len(buf)
    assert (list(got[2]), got[3]) == (list(want[2]), want[3])


@pytest.mark.parametrize("command", ["info", "validate", "records"])
def test_decoding_commands_start_without_numpy(command, raw_sample_dir):
    # numpy's import is about 60 ms of a 120 ms `info`; the decoding path keeps it out
    # (it is for the encoder, the RAM image, the TUI index and the Python walk).
    import subprocess
    import sys

    streams = [str(raw_sample_dir / f"{n}.mig") for n in ("x86-running", "x86-xbzrle", "x86-compress", "x86-postcopy")]
    code = (
        "import sys\nfrom migstream.cli import main\n"
        f"for path in {streams!r}:\n"
        f"    sys.argv = ['migstream', {command!r}, path]\n"
        "    try:\n        main()\n    except SystemExit as exc:\n        assert not exc.code, exc.code\n"
        "print('numpy' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False"


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(part, min_size=1, max_size=3), seed=st.integers(0, 2**32), page_size=st.sampled_from([4096, 1024]))
def test_bytes_per_encoding_equal_record_extents(ops, seed, page_size):
    # `info`'s bytes per encoding (runs counted whole) equal the sum of the records'
    # extents in plain construct parsing (each record ends where the next element starts).
    from migstream.decode.decoder import StreamDecoder
    from migstream.tools.summary import StreamSummary

    data = build_stream(ops, seed, page_size)
    items = reference_records(data, page_size)
    start = [it[0] if isinstance(it[0], int) else it[1] for it in items]
    names = {F.PAGE: "page", F.ZERO: "zero", F.XBZRLE: "xbzrle", F.COMPRESS_PAGE: "compressed"}
    want = {}
    for k, it in enumerate(items):
        if isinstance(it[0], int):
            name = names[it[1] & ~F.CONTINUE]
            want[name] = want.get(name, 0) + start[k + 1] - it[0]
    dec = StreamDecoder(page_size=page_size)
    dec.feed(data)
    dec.feed(b"")
    summary = StreamSummary()
    for ev in dec:
        summary.add(ev)
    assert {k: v for k, v in summary.record_bytes.items() if k in names.values() and v} == want
