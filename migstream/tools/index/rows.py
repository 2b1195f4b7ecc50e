"""What the index holds: the kinds of row, the row columns, and the small tables
of blocks, sections and multifd packets the scan fills (no logic but growing)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field

import numpy as np

from ...wire.grammar import SectionType
from ..vocabulary import PageKind


class RowKind(enum.IntEnum):
    """What a row of the index is."""

    HEADER = 0
    CONFIGURATION = 1
    SECTION = 2  # a section header (START/PART/END/FULL); flags = SectionType
    MEM_SIZE = 3
    PAGE = 4  # a RAM record for one page; flags = RAM flags
    MARKER = 5  # EOS, MULTIFD_FLUSH, HOOK; flags = RAM flags
    COMMAND = 6  # flags = command number
    DEVICE = 7  # a device section's payload
    PACKAGE_END = 8
    EOF = 9
    VMDESCRIPTION = 10
    UNDECODED = 11
    BLOCK = 12  # a block migration record ("block" section); flags = BLK_MIG_FLAG_*
    DIRTY_BITMAP = 13  # a dirty-bitmap record; flags = DIRTY_BITMAP_MIG_FLAG_*


NO_BLOCK = -1


def _per_kind() -> np.ndarray:
    return np.zeros(len(PageKind), dtype=np.int64)


@dataclass
class BlockInfo:
    index: int
    name: str
    used_length: int
    pages: int
    base: int  # first slot in the page-state array
    sent: np.ndarray = field(default_factory=_per_kind)  # records by PageKind


@dataclass
class SectionInfo:
    """One section (or command) in stream order: the timeline's lines."""

    row: int
    offset: int
    type: SectionType | None  # None for a command
    section_id: int
    idstr: str
    end_offset: int = 0  # after the footer
    payload_end: int = 0  # where the footer (or the next element) starts
    end_row: int = 0
    iteration: int | None = None  # position among the RAM sections: START 0, PARTs 1.., END last
    pages: np.ndarray = field(default_factory=_per_kind)  # pages sent, by PageKind
    page_bytes: int = 0  # bytes of RAM page records

    @property
    def label(self) -> str:
        if self.type is None:
            return f"COMMAND {self.idstr}"
        return f"{self.type.name} {self.idstr}"


@dataclass(frozen=True)
class ScanProgress:
    bytes_done: int
    bytes_total: int | None
    rows: int
    complete: bool


@dataclass(frozen=True)
class MultifdPacketInfo:
    channel: int
    file: str
    offset: int  # in the channel file
    packet_num: int
    flags: int
    block: str
    normal_pages: int
    zero_pages: int
    payload_size: int


class Column:
    """A growable numpy column; ``view(n)`` is safe to read while it grows."""

    def __init__(self, dtype) -> None:
        self.data = np.zeros(1024, dtype=dtype)

    def put(self, at: int, values) -> None:
        end = at + len(values)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[:at] = self.data[:at]
            grown[at:end] = values
            self.data = grown  # one reference swap: readers see old or new, both valid to `at`
        else:
            self.data[at:end] = values


@dataclass(frozen=True)
class Rows:
    """A consistent snapshot of the index columns (views, do not modify)."""

    count: int
    offset: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    block: np.ndarray
    page: np.ndarray
