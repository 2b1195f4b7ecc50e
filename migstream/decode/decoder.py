"""A sans-IO decoder for the QEMU migration stream.

Feed it bytes, take events::

    dec = StreamDecoder()
    dec.feed(chunk)            # any number of times
    dec.feed(b"")              # end of input
    while (ev := dec.next_event()) is not NEED_DATA and ev is not None:
        ...

``next_event`` returns an event, ``NEED_DATA`` when it needs more input, or None
when the stream is complete.  It raises ``StreamError`` (with the byte offset) where
QEMU's loader (savevm.c ``qemu_loadvm_state``, ram.c ``ram_load_precopy``) would
reject the stream; after an error the decoder stays failed.

Input is never copied in the common case: a chunk is parsed in place and events
carry memoryviews into it.  Only an element that straddles two chunks is joined.
Runs of same-kind CONTINUE records (PAGE or ZERO) are recognised with numpy
"stride speculation" and reported as one ``PageRun``.

This module is the state machine: the file header, the top-level elements
(sections, commands, the configuration, EOF, the VMDESCRIPTION after it) and which
reader takes a section's payload.  The input buffer is input.py, the readers are
ram.py, mappedram_reader.py, commands.py, devices.py, blockmig.py and
dirtybitmap.py; page content rules are pages.py.
"""

from __future__ import annotations

import struct
from typing import Any

from construct import ConstructError

from ..errors import StreamError
from ..errors import TruncatedStream
from ..events import NEED_DATA
from ..events import Configuration
from ..events import EndOfStream
from ..events import FileHeader
from ..events import PackageEnd
from ..events import SectionStart
from ..events import VmDescription
from ..wire import grammar as g
from ..wire.fastpath import SECTION_ID
from ..wire.limits import MAX_CONFIG_SUBSECTION
from ..wire.limits import MAX_DESCRIPTION
from ..wire.limits import MAX_MACHINE_NAME
from ..wire.limits import MAX_TARGET_PAGE_BITS
from ..wire.limits import MIN_TARGET_PAGE_BITS
from .blockmig import BlockMigrationReader
from .commands import CommandReader
from .description import DeviceIndex
from .description import description_page_size
from .devices import DeviceSectionReader
from .dirtybitmap import DirtyBitmapReader
from .input import NeedData
from .mappedram_reader import MappedRamReader
from .ram import RamReader
from .state import Section

ST = g.SectionType
_FILE_HEADER_WORD = struct.Struct(">I")
_LENGTH = struct.Struct(">I")


class StreamDecoder(
    RamReader, MappedRamReader, CommandReader, DeviceSectionReader, BlockMigrationReader, DirtyBitmapReader
):
    """Turns the bytes of one migration stream (main channel) into events."""

    def __init__(
        self,
        *,
        page_size: int | None = None,
        description: dict | None = None,
        allow_hook: bool = False,
        max_description: int = MAX_DESCRIPTION,
        count_trailing: bool = True,
    ) -> None:
        super().__init__()
        self._scan = (-1, 0)
        self._failed: StreamError | None = None
        self._skip_end = 0

        self._state = "header"
        self._sections = {}
        self._section = None  # the one whose payload is being read
        self._footers = None
        self.page_size = page_size
        self.page_size_source = "option" if page_size else None
        self._plans = None
        self._devices = DeviceIndex(description) if description else None
        if description and not page_size and description_page_size(description):
            self.page_size = description_page_size(description)
            self.page_size_source = "description"
        self._allow_hook = allow_hook
        self._max_description = max_description
        # False: stop at the first byte after the stream (a container that knows the
        # stream's exact size, e.g. a qcow2 snapshot, where more input is a fault).
        self._count_trailing = count_trailing

        self.configuration = None
        self.blocks = {}
        self._last_block = None  # the CONTINUE context, across sections
        self._postcopy_hugepages = False
        self._mapped_ram = False  # capability mapped-ram: MEM_SIZE carries page regions
        self._mapped = None
        self.warnings = []
        self.ram_complete = False  # the RAM END section's EOS was seen
        #: What follows the stream (after the VMDESCRIPTION) up to the end of the input, as
        #: in a Proxmox state volume: (offset, length, first non-zero offset or None).
        self.trailing: tuple[int, int, int | None] | None = None
        # Decode each XBZRLE delta into a scratch page to check it.  A consumer that
        # passes every PageRecord to pages.apply_page (which checks the same, with the
        # same error) turns this off so that each delta is decoded once.
        self.check_deltas = True

    # --- events --------------------------------------------------------------------

    def next_event(self):
        if self._failed:
            raise self._failed
        if self._state == "done":
            return None
        if self._chunk is not None:
            self._rebase()
        self._elem = self._pos
        try:
            return getattr(self, "_st_" + self._state)()
        except NeedData:
            self._pos = self._elem  # parse the whole element again with more input
            return NEED_DATA
        except StreamError as exc:
            self._failed = exc
            raise

    def __iter__(self):
        while True:
            ev = self.next_event()
            if ev is NEED_DATA or ev is None:
                return
            yield ev

    # Each _st_* method parses one element at _pos (raising NeedData if it is
    # incomplete) and returns its event.

    def _st_header(self):
        off = self.offset
        magic = self._unpack(_FILE_HEADER_WORD)
        version = self._unpack(_FILE_HEADER_WORD)
        if magic != g.QEMU_VM_FILE_MAGIC:
            raise StreamError(
                f'not a QEMU migration stream: magic 0x{magic:08x}, expected 0x{g.QEMU_VM_FILE_MAGIC:08x} ("QEVM")', off
            )
        if version == g.QEMU_VM_FILE_VERSION_COMPAT:
            raise StreamError("SaveVM v2 format is obsolete and don't work anymore", off + 4)
        if version != g.QEMU_VM_FILE_VERSION:
            raise StreamError(f"Unsupported migration stream version {version}", off + 4)
        self._state = "top"
        return FileHeader(off, version)

    def _st_top(self):
        if self._packages and self.offset == self._packages[-1][0]:
            end, length = self._packages.pop()
            return PackageEnd(end, length)
        off = self.offset
        typ = self._u8()
        if typ == ST.START or typ == ST.FULL:
            sid = self._unpack(SECTION_ID)
            idstr = self._idstr()
            instance_id = self._unpack(SECTION_ID)
            version_id = self._unpack(SECTION_ID)
            sec = Section(sid, idstr, instance_id, version_id)
            self._sections[sid] = sec
            return self._open_section(off, ST(typ), sec)
        if typ == ST.PART or typ == ST.END:
            sid = self._unpack(SECTION_ID)
            sec = self._sections.get(sid)
            if sec is None:
                raise StreamError(f"Unknown savevm section {sid}", off)
            return self._open_section(off, ST(typ), sec)
        if typ == ST.COMMAND:
            return self._command(off)
        if typ == ST.CONFIGURATION:
            return self._configuration(off)
        if typ == ST.EOF:
            if self._packages:
                # The nested stream ended; QEMU ignores the rest of the package.
                end, length = self._packages[-1]
                self._skip_end = end
                self._state = "skip"
                return self._st_skip()
            self._state = "after_eof"
            return EndOfStream(off)
        raise StreamError(f"Unknown savevm section type {typ}", off)

    def _st_skip(self):
        # The rest of a package after its nested EOF, consumed as it arrives.
        while self.offset < self._skip_end:
            if self._pos >= len(self._buf):
                self._rebase()
                if self._pos >= len(self._buf):
                    if self._eof:
                        raise TruncatedStream("stream ends inside PACKAGED data", self.offset)
                    self._elem = self._pos
                    raise NeedData
            self._pos += min(self._skip_end - self.offset, len(self._buf) - self._pos)
        end, length = self._packages.pop()
        self._state = "top"
        return PackageEnd(end, length)

    def _open_section(self, off: int, typ: ST, sec: Section) -> SectionStart:
        self._section = sec
        self._section_type = typ
        if sec.idstr == "ram" and sec.instance_id == 0 and typ != ST.FULL:
            if sec.version_id != g.RAM_SECTION_VERSION:
                raise StreamError(
                    f"ram section version {sec.version_id}, the loader accepts only {g.RAM_SECTION_VERSION}",
                    off,
                    section="ram",
                )
            self._enter_ram(off)
            self._state = "ram"
        elif sec.idstr == g.BLOCK_SECTION and typ != ST.FULL:
            self._state = "block"  # parsed record by record: exact, and memory stays flat
        elif sec.idstr == g.DIRTY_BITMAP_SECTION and typ != ST.FULL:
            self._state = "dirty_bitmap"
        else:
            self._state = "device"
        return SectionStart(off, typ, sec.section_id, sec.idstr, sec.instance_id, sec.version_id)

    # --- the configuration section ----------------------------------------------------

    def _configuration(self, off: int) -> Configuration:
        n = self._unpack(_LENGTH)
        if n > MAX_MACHINE_NAME:
            raise StreamError(f"configuration machine name of {n} bytes (limit {MAX_MACHINE_NAME})", off + 1)
        self._need(n)
        machine = bytes(self._buf[self._pos : self._pos + n]).decode("latin-1")
        self._pos += n
        fields: dict[str, Any] = {}
        while True:
            self._need(1)
            if self._buf[self._pos] != ST.SUBSECTION:
                break
            sub_off = self.offset
            try:
                sub = self._construct(g.ConfigSubsection, MAX_CONFIG_SUBSECTION)
            except ConstructError as exc:
                self._pos += 1
                name = self._idstr()
                raise StreamError(
                    f"unknown configuration subsection '{name}'", sub_off, section="configuration"
                ) from exc
            body = sub.body
            if "target_page_bits" in body:
                bits = body.target_page_bits
                if not MIN_TARGET_PAGE_BITS <= bits <= MAX_TARGET_PAGE_BITS:
                    # The loader compares with its own TARGET_PAGE_BITS (savevm.c
                    # configuration_post_load); outside this range no target matches.
                    raise StreamError(
                        f"Received TARGET_PAGE_BITS is {bits}, outside {MIN_TARGET_PAGE_BITS}..{MAX_TARGET_PAGE_BITS}",
                        sub_off,
                        section="configuration",
                    )
                fields["target_page_bits"] = bits
            elif "capabilities" in body:
                fields["capabilities"] = tuple(body.capabilities)
            elif "uuid" in body:
                fields["uuid"] = bytes(body.uuid)
        fields["data"] = bytes(self._buf[off + 1 - self._base : self._pos])
        self.configuration = Configuration(off, machine, **fields)
        self._mapped_ram = "mapped-ram" in self.configuration.capabilities
        return self.configuration

    # --- after EOF -----------------------------------------------------------------

    def _st_after_eof(self):
        off = self.offset
        if self._pos >= len(self._buf) and not self._grow():
            if self._eof:
                self._state = "done"
                return None
            raise NeedData
        typ = self._u8()
        if typ != ST.VMDESCRIPTION:
            # QEMU only warns: "Expected vmdescription section, but got %d".
            self.warnings.append((off, f"Expected vmdescription section, but got {typ}"))
            self._state = "done"
            return None
        length = self._unpack(_LENGTH)
        if length > self._max_description:
            raise StreamError(
                f"VMDESCRIPTION of {length} bytes exceeds the limit of {self._max_description}",
                off,
                section="vmdescription",
            )
        self._need(length)
        text = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        self._state = "trailer"
        return VmDescription(off, text)

    def _st_trailer(self):
        # After the stream: a volume sized ahead of time (Proxmox: 2 x RAM + 500 MiB)
        # holds zeros or stale bytes up to its end.  Counted in passing, never kept.
        while True:
            if self._pos >= len(self._buf):
                self._rebase()
            avail = len(self._buf) - self._pos
            if avail <= 0:
                if not self._eof:
                    self._elem = self._pos
                    raise NeedData
                break
            if not self._count_trailing:
                self.warnings.append((self.offset, "trailing data after the VMDESCRIPTION"))
                self._state = "done"
                return None
            if self.trailing is None:
                self.trailing = (self.offset, 0, None)
            start, length, nonzero = self.trailing
            if nonzero is None:
                import numpy as np  # only inputs with bytes after the stream; count_nonzero runs at memory speed

                piece = np.frombuffer(self._buf[self._pos :], np.uint8)
                if np.count_nonzero(piece):
                    nonzero = self.offset + int(np.flatnonzero(piece)[0])
            self.trailing = (start, length + avail, nonzero)
            self._pos += avail
        self._state = "done"
        if self.trailing is not None and self.trailing[2] is not None:
            start, length, nonzero = self.trailing
            self.warnings.append(
                (start, f"{length} bytes after the stream's end, not all zero (first non-zero byte at 0x{nonzero:x})")
            )
        return None
