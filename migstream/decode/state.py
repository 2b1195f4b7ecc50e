"""What the section readers share: the decoder's state, declared once.

``StreamDecoder`` (decoder.py) is assembled from one reader class per kind of
element (ram.py, mappedram_reader.py, commands.py, devices.py, blockmig.py,
dirtybitmap.py); each reads and updates the attributes declared here, which
``StreamDecoder.__init__`` sets.
"""

from __future__ import annotations

from typing import Any

from ..events import Configuration
from ..events import RamBlock
from ..wire import grammar as g
from .description import DeviceIndex
from .input import InputBuffer
from .mappedram import MappedRamList


class Section:
    """A section announced by START/FULL, looked up by id for PART/END."""

    __slots__ = ("section_id", "idstr", "instance_id", "version_id")

    def __init__(self, section_id: int, idstr: str, instance_id: int, version_id: int) -> None:
        self.section_id = section_id
        self.idstr = idstr
        self.instance_id = instance_id
        self.version_id = version_id


class DecoderState(InputBuffer):
    """The attributes every section reader may use (set by StreamDecoder.__init__)."""

    # The state machine: the name of the next _st_* method, the sections seen, the
    # one whose payload is being read and its type (START, PART, END or FULL).
    _state: str
    _sections: dict[int, Section]
    _section: Section | None
    _section_type: g.SectionType
    _footers: bool | None  # whether sections end with a footer (decided by the first)
    _skip_end: int  # end of a package whose nested stream ended
    _postcopy_listening: bool  # POSTCOPY_LISTEN seen: a listen thread reads the stream
    _postcopy_running: bool  # POSTCOPY_RUN seen

    # What the stream told so far.
    configuration: Configuration | None
    page_size: int | None
    page_size_source: str | None
    blocks: dict[str, RamBlock]
    warnings: list[tuple[int, str]]
    ram_complete: bool
    _devices: DeviceIndex | None
    _allow_hook: bool
    _max_description: int

    # RAM (ram.py, mappedram_reader.py).
    _last_block: str | None  # the CONTINUE context, across sections
    _postcopy_hugepages: bool
    _mapped_ram: bool  # capability mapped-ram: MEM_SIZE carries page regions
    _mapped: MappedRamList | None
    _plans: Any  # RamPlans, once the page size is known
    _walker: Any  # RunWalker over _plans
    _mask: int  # page_size - 1
    _page_bytes: int  # page_size, once the RAM section began
    check_deltas: bool  # decode each XBZRLE delta to check it (see pages.py)

    # Device sections (devices.py).
    _scan: tuple[int, int]  # (offset, bytes searched) of an unfinished footer scan

    def _where(self) -> str | None:
        return self._section.idstr if self._section else None
