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
from ..wire.limits import MAX_PENDING_HEADERS
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
from .sections import DeviceNames
from .sections import SectionRegistry
from .sections import check_machine
from .sections import device_names_for
from .sections import machine_version
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
        self._postcopy_listening = False
        self._postcopy_running = False

        self._state = "header"
        self._sections = {}
        self._section = None  # the one whose payload is being read
        self._footers = None
        self.page_size = page_size
        self.page_size_source = "option" if page_size else None
        self._plans = None
        self._devices = DeviceIndex(description) if description else None
        self._registry = SectionRegistry(description)
        # START/FULL headers of device sections seen before a description is known
        # (checked when the VMDESCRIPTION arrives); None once there are too many.
        self._pending_headers: list[tuple[int, str, int, int]] | None = []
        #: Why the device sections' headers could not be checked (None: they were,
        #: or there were none): ``validate`` prints it in its verdict.
        self.device_checks_missing: str | None = None
        #: Without a description: the destination QEMU whose bundled registry judges
        #: the device headers (None: the machine type's, sections.device_names_for),
        #: or the names given by the user (``expect_devices``).
        self.qemu_version: str | None = None
        self._device_names: DeviceNames | None = None
        #: Which registry judged the device names and versions (then only the
        #: instance ids are not verified).
        self.device_names_checked: str | None = None
        #: Device payloads of a stream without a description were framed by a search
        #: for their footer (their length is not known).
        self.payloads_searched = False
        if description and not page_size and description_page_size(description):
            self.page_size = description_page_size(description)
            self.page_size_source = "description"
        self._allow_hook = allow_hook
        self._max_description = max_description
        # False: stop at the first byte after the stream (a container that knows the
        # stream's exact size, e.g. a qcow2 snapshot, where more input is a fault).
        self._count_trailing = count_trailing

        self.configuration = None
        #: Offset of the first element when it is not the configuration (QEMU 2.4+
        #: machine types always send one first; validate refuses a stream without).
        self.configuration_missing_at: int | None = None
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
            ev = getattr(self, "_st_" + self._state)()
            if ev is None:
                self._check_without_description()
            return ev
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
        self._state = "config"
        return FileHeader(off, version)

    def _st_config(self):
        # qemu_loadvm_state: the configuration comes first, or not at all.  Every
        # machine type since QEMU 2.4 sends it ("Configuration section missing"
        # otherwise); older ones do not, so its absence is recorded, not raised:
        # ``validate`` refuses it, extract and the others decode on.
        off = self.offset
        typ = self._u8()
        if typ != ST.CONFIGURATION:
            self.configuration_missing_at = off
            self._pos -= 1
            self._state = "top"
            return self._st_top()
        ev = self._configuration(off)  # (NeedData: parsed again in this state)
        self._state = "top"
        return ev

    def _st_top(self):
        if self._packages and self.offset == self._packages[-1][0]:
            end, length = self._packages.pop()
            self._check_package_end(end)
            return PackageEnd(end, length)
        off = self.offset
        typ = self._u8()
        if typ == ST.START or typ == ST.FULL:
            sid = self._unpack(SECTION_ID)
            idstr = self._idstr()
            instance_id = self._unpack(SECTION_ID)
            version_id = self._unpack(SECTION_ID)
            sec = Section(sid, idstr, instance_id, version_id)
            self._check_header(off, typ, sec)
            self._sections[sid] = sec
            return self._open_section(off, ST(typ), sec)
        if typ == ST.PART or typ == ST.END:
            sid = self._unpack(SECTION_ID)
            sec = self._sections.get(sid)
            if sec is None:
                raise StreamError(f"Unknown savevm section {sid}", off)
            self._registry.check_part(off, sid, sec.idstr, sec.instance_id)
            return self._open_section(off, ST(typ), sec)
        if typ == ST.COMMAND:
            return self._command(off)
        # (ST.CONFIGURATION here, after the first element, is an unknown type to the
        # loader's main loop: savevm.c qemu_loadvm_state_main.)
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
        self._check_package_end(end)
        self._state = "top"
        return PackageEnd(end, length)

    def _check_package_end(self, end: int) -> None:
        if self._postcopy_listening and not self._postcopy_running:
            # The main thread goes on reading after the package while the postcopy
            # listen thread reads the same stream: QEMU fails ("Unknown savevm section
            # type" in one of them).
            raise StreamError(
                "PACKAGED data ends without POSTCOPY_RUN while the postcopy listen thread reads the stream", end
            )

    def _check_header(self, off: int, typ: int, sec: Section) -> None:
        """The loader's find_se and version checks (sections.py), now when the
        description is known, else when it arrives after EOF."""
        self._registry.check_header(off, typ, sec.idstr, sec.instance_id, sec.version_id)
        if self._registry.known or self._registry.registered(sec.idstr, sec.instance_id) is not None:
            return
        self.device_checks_missing = "no description"
        if self._pending_headers is not None:
            if len(self._pending_headers) >= MAX_PENDING_HEADERS:
                self._pending_headers = None
            else:
                self._pending_headers.append((off, sec.idstr, sec.instance_id, sec.version_id))

    def _check_pending(self, text: bytes) -> None:
        """A description that arrived after the sections: check their headers now."""
        if self.device_checks_missing is None:
            return
        registry = SectionRegistry.from_json(text)
        if registry is None or self._pending_headers is None:
            return
        registry.machine_version = self._registry.machine_version
        for off, idstr, instance_id, version_id in self._pending_headers:
            registry.check_header(off, ST.FULL, idstr, instance_id, version_id)
        self.device_checks_missing = None

    def expect_devices(self, description: dict | None = None, names: DeviceNames | None = None) -> None:
        """The destination's devices, given by the user (another stream's VMDESCRIPTION
        of the same VM, or QEMU's -dump-vmstate names): device headers are checked
        against these, not against the stream's own description.  Call before the
        first event."""
        if description is not None:
            registry = SectionRegistry(description)
            registry.machine_version = self._registry.machine_version
            if registry.known:
                self._registry = registry
                self._pending_headers = []
        self._device_names = names

    def _check_without_description(self) -> None:
        """At the end of a stream that brought no description: check the device
        headers seen against the destination QEMU's registered names and versions
        (the bundled registry; instance ids stay unknown)."""
        if self.device_checks_missing is None or self._pending_headers is None:
            return
        machine = self.configuration.machine if self.configuration is not None else None
        names = device_names_for(machine, self.qemu_version)
        if self._device_names is not None:
            # -dump-vmstate lists device classes only: what is registered outside
            # them (timer, cpu_common, ...) comes from the bundled registry.
            names = self._device_names if names is None else names.merged(self._device_names)
        if names is None:
            return
        pending, self._pending_headers = self._pending_headers, None
        for off, idstr, instance_id, version_id in pending:
            names.check(off, idstr, instance_id, version_id, self._registry.machine_version)
        self.device_names_checked = names.label

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
            # vmstate_load_state on the subsection (each is version 1, minimum 1).
            # QEMU 7.2 judges only the low byte here: 0x80000001 loads, 0xffffffff is
            # "255 is too new" (measured, docs/validate.md).
            version = sub.version_id & 0xFF
            if version != 1:
                age = "new" if version > 1 else "old"
                raise StreamError(
                    f"{sub.name}: incoming version_id {version} is too {age} for local version_id 1",
                    sub_off,
                    section="configuration",
                )
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
        check_machine(machine, fields.get("target_page_bits"), off)
        self._registry.machine_version = machine_version(machine)
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
        # QEMU reads the description's length and bytes after the stream is loaded and
        # ignores read errors there (savevm.c qemu_loadvm_state): a cut or oversized
        # description does not fail the load, so it is a warning here.
        try:
            length = self._unpack(_LENGTH)
            if length > self._max_description:
                self.warnings.append(
                    (off, f"VMDESCRIPTION of {length} bytes exceeds the limit of {self._max_description}; not read")
                )
                self._state = "done"
                return None
            self._need(length)
        except TruncatedStream:
            self.warnings.append((off, "VMDESCRIPTION cut short (QEMU does not check it)"))
            self._state = "done"
            return None
        text = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        self._check_pending(text)
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
