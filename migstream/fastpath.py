"""Readers for the hot path, derived from the grammar at import time.

Nothing here restates the byte layout: sizes come from ``sizeof()`` of the grammar's
constructs, length prefixes from the ``struct`` format of each ``Prefixed`` length
field, and flag values from ``RamFlag``.  ``tests/test_fastpath.py`` holds the decoder
built on these plans equal to plain construct parsing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from construct import Construct, FormatField, Prefixed, SizeofError, Struct

from . import grammar as g


@dataclass(frozen=True, slots=True)
class FixedField:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
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
#: be32 section id after the 0x7e footer byte, and after PART/END.
SECTION_ID = _format_of(g.SectionFooter.subcons[0])


@dataclass(frozen=True, slots=True)
class RamPlans:
    """Per-kind payload plans for one page size."""

    page_size: int
    plans: dict
    fixed: dict  # kind -> payload size, for fixed-size kinds

    @classmethod
    def for_page_size(cls, page_size: int) -> "RamPlans":
        plans = {kind: payload_plan(kind, page_size) for kind in g.RAM_PAYLOADS if kind != g.RamFlag.MEM_SIZE}
        fixed = {k: sum(f.size for f in p) for k, p in plans.items() if all(isinstance(f, FixedField) for f in p)}
        return cls(page_size, plans, fixed)
