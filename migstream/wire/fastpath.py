"""Readers for the hot path, derived from the grammar at import time.

Nothing here restates the byte layout: sizes come from ``sizeof()`` of the grammar's
constructs, length prefixes from the ``struct`` format of each ``Prefixed`` length
field, and flag values from ``RamFlag``.  ``tests/unit/test_fastpath.py`` holds the decoder
built on these plans equal to plain construct parsing.
"""

from __future__ import annotations

import struct
from array import array

from construct import Construct
from construct import FormatField
from construct import Prefixed
from construct import SizeofError
from construct import Struct

from ..record import record
from . import grammar as g
from .limits import MAX_RUN_RECORDS

try:  # the compiled walk (migstream/wire/_runscan.c); the Python walk below is its reference
    from . import _runscan
except ImportError:  # pragma: no cover - an install without a C compiler
    # The extension is optional (pyproject.toml); mypy types the name as the module of
    # _runscan.pyi, which keeps the call of walk() checked, so None needs the exception.
    _runscan = None  # type: ignore[assignment]

#: Whether the compiled walk is in use (``migstream --version`` says it).
COMPILED = _runscan is not None


#: The encoder's writer of bulk records (``_runscan.write_pages``), None without the extension.
write_pages = _runscan.write_pages if _runscan is not None else None
#: extract's writer of bulk runs (``_runscan.write_run``), None without the extension.
write_run = _runscan.write_run if _runscan is not None else None
#: fallocate() of a range about to be written (encode's output), None without the extension.
preallocate = _runscan.preallocate if _runscan is not None else None


@record
class FixedField:
    name: str
    size: int


@record
class PrefixedField:
    name: str
    prefix: struct.Struct  # the length field's format


def _field_plan(name: str, con: Construct, page_size: int):
    con = getattr(con, "subcon", con) if type(con).__name__ == "Renamed" else con
    if isinstance(con, Prefixed):
        if not isinstance(con.lengthfield, FormatField):
            raise TypeError(f"{name}: only FormatField length prefixes are derivable")
        return PrefixedField(name, struct.Struct(con.lengthfield.fmtstr))
    try:
        return FixedField(name, con.sizeof(_params={"page_size": page_size}, page_size=page_size))
    except SizeofError as exc:  # pragma: no cover - a grammar change the plan can't follow
        raise TypeError(f"{name}: payload field is neither fixed-size nor length-prefixed") from exc


def payload_plan(kind: int, page_size: int) -> tuple:
    """The fields of a RAM record payload of ``kind``, in wire order."""
    con = g.RAM_PAYLOADS[kind]
    if not isinstance(con, Struct):
        return ()  # Pass: no payload
    return tuple(_field_plan(sc.name, sc, page_size) for sc in con.subcons)


def fixed_payload_size(kind: int, page_size: int) -> int | None:
    """Total payload size of a fixed-size kind (PAGE, ZERO, markers), else None."""
    plan = payload_plan(kind, page_size)
    if all(isinstance(f, FixedField) for f in plan):
        return sum(f.size for f in plan)
    return None


def _format_of(con: Construct) -> struct.Struct:
    while not isinstance(con, FormatField):
        con = con.subcon
    return struct.Struct(con.fmtstr)


#: be64 addr|flags at the start of every RAM record.
RAM_HEADER = _format_of(g.RamRecordHeader.subcons[0])
#: The length prefix of an idstr (u8).
IDSTR_LENGTH = _format_of(g.IdStr.subcon.lengthfield)
#: be64 value|flags at the start of every block migration record.
BLOCK_HEADER = _format_of(g.BlockRecord.subcons[0])
#: be32 section id after the 0x7e footer byte, and after PART/END.
SECTION_ID = _format_of(g.SectionFooter.subcons[0])


@record
class RamPlans:
    """Per-kind payload plans for one page size."""

    page_size: int
    plans: dict
    fixed: dict  # kind -> payload size, for fixed-size kinds

    @classmethod
    def for_page_size(cls, page_size: int) -> RamPlans:
        plans = {kind: payload_plan(kind, page_size) for kind in g.RAM_PAYLOADS if kind != g.RamFlag.MEM_SIZE}
        fixed = {k: sum(f.size for f in p) for k, p in plans.items() if all(isinstance(f, FixedField) for f in p)}
        return cls(page_size, plans, fixed)


#: Consecutive records of a run before the Python walk speculates that the stretch
#: goes on and checks the rest of it at once with numpy.
_SPECULATE_AFTER = 64


class RunWalker:
    """Finds runs of bulk-stage records: CONTINUE records for consecutive pages of one
    block, each PAGE or ZERO (the kinds whose payload is fixed-size).

    ``walk`` is the decoder's hot loop.  It uses the compiled walk when the extension
    was built and the Python walk otherwise; both take every size and header tag from
    the grammar (``RamPlans``) and give the same answer.
    """

    def __init__(self, plans: RamPlans, kinds=(g.RamFlag.PAGE, g.RamFlag.ZERO), compiled: bool = True):
        if RAM_HEADER.format not in (">Q", ">q"):  # pragma: no cover - a grammar change
            raise TypeError("the compiled walk reads be64 record headers")
        self.page_size = plans.page_size
        # (header tag, record size, kind) per kind
        self.shapes = tuple((int(k) | g.RAM_CONTINUE, RAM_HEADER.size + plans.fixed[int(k)], int(k)) for k in kinds)
        if len(self.shapes) != 2:  # pragma: no cover - the compiled walk takes two kinds
            raise TypeError("a run has two record kinds")
        self._compiled = _runscan.walk if (compiled and _runscan is not None) else None

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def walk(self, buf, pos: int, addr: int, cap: int):
        """The run at ``buf[pos]`` for page ``addr`` onwards, at most ``cap`` records:
        ``(count, end, starts, kinds)`` with ``starts`` relative to ``pos``."""
        cap = min(cap, MAX_RUN_RECORDS)
        if self._compiled is not None:
            (ta, sa, ka), (tb, sb, kb) = self.shapes
            n, end, raw_starts, kinds = self._compiled(
                buf, pos, addr, self.page_size, cap, RAM_HEADER.size, ta, sa, ka, tb, sb, kb
            )
            starts = array("q")
            starts.frombytes(raw_starts)
            return n, end, starts, kinds
        return self.walk_python(buf, pos, addr, cap)

    def walk_python(self, buf, pos: int, addr: int, cap: int):
        """The reference walk: a scalar loop, and stretches of one kind longer than
        _SPECULATE_AFTER records checked in bulk with numpy (headers at a fixed stride)."""
        end = len(buf)
        ps = self.page_size
        by_tag = {tag: (size, kind) for tag, size, kind in self.shapes}
        unpack = RAM_HEADER.unpack_from
        hsize = RAM_HEADER.size
        starts = array("q")
        kinds = bytearray()
        p, a, n = pos, addr, 0
        same, last = 0, -1  # length and kind of the current one-kind stretch
        while n < cap and p + hsize <= end:
            shape = by_tag.get(unpack(buf, p)[0] - a)
            if shape is None:
                break
            size, k = shape
            if p + size > end:
                break
            starts.append(p - pos)
            kinds.append(k)
            p += size
            a += ps
            n += 1
            same = same + 1 if k == last else 1
            last = k
            if same == _SPECULATE_AFTER:
                m = min((end - p) // size, cap - n)
                if m > 0:
                    import numpy as np  # only here: decoding without numpy's import cost otherwise

                    tag = k | g.RAM_CONTINUE
                    heads = np.ndarray((m,), dtype=">u8", buffer=buf, offset=p, strides=(size,))
                    want = np.arange(a + tag, a + tag + m * ps, ps, dtype=np.uint64)
                    bad = np.flatnonzero(heads != want)
                    m = int(bad[0]) if len(bad) else m
                    if m:
                        starts.extend(range(p - pos, p - pos + m * size, size))
                        kinds += bytes([k]) * m
                        p += m * size
                        a += m * ps
                        n += m
                same = 0
        return n, p, starts, bytes(kinds)
