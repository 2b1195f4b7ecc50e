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
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from construct import ConstructError
from construct import StreamError as ConstructStreamError

from ..codecs.xbzrle import xbzrle_decode_into
from ..errors import StreamError, TruncatedStream, XbzrleError
from ..events import (
    NEED_DATA,
    BlockRecord,
    CommandEvent,
    Configuration,
    DeviceState,
    DirtyBitmapRecord,
    EndOfStream,
    FileHeader,
    MappedRamBlock,
    MappedRamPages,
    PackageEnd,
    PageRecord,
    PageRun,
    RamBlock,
    RamBlockList,
    RamMarker,
    SectionEnd,
    SectionStart,
    Undecoded,
    VmDescription,
)
from ..wire import grammar as g
from ..wire.fastpath import BLOCK_HEADER, IDSTR_LENGTH, RAM_HEADER, SECTION_ID, RamPlans, RunWalker
from ..wire.limits import (
    MAX_BLOCK_LENGTH,
    MAX_BLOCK_LIST,
    MAX_CONFIG_SUBSECTION,
    MAX_DESCRIPTION,
    MAX_FOOTER_SCAN,
    MAX_MACHINE_NAME,
    MAX_PACKAGE_DEPTH,
    MAX_PAGE_SIZE,
    MAX_RAM_BLOCKS,
    MAX_TARGET_PAGE_BITS,
    MIN_PAGE_SIZE,
    MIN_TARGET_PAGE_BITS,
)
from ..wire.pagesize import page_size_for
from .description import DeviceIndex, description_page_size
from .mappedram import MappedRamList, check_mapped_ram_header

RamFlag = g.RamFlag
ST = g.SectionType

# Limits on hostile input live in limits.py (imported above, re-exported here).

# Plain ints for the hot path (enum arithmetic costs microseconds).
_CONTINUE = int(RamFlag.CONTINUE)
_NOT_CONTINUE = ~_CONTINUE
_PAGE, _ZERO, _XBZRLE, _EOS = int(RamFlag.PAGE), int(RamFlag.ZERO), int(RamFlag.XBZRLE), int(RamFlag.EOS)
_PAGE_KINDS = frozenset(int(k) for k in g.PAGE_KINDS)

_TOP_TYPES = frozenset({ST.EOF, ST.START, ST.PART, ST.END, ST.FULL, ST.COMMAND})
_RUN_KINDS = frozenset({_PAGE, _ZERO})


#: The most a dirty-bitmap record takes before its bits: 4 flag bytes, two names,
#: granularity + bitmap flags or sector range + buffer size.
_DIRTY_BITMAP_HEAD_MAX = 4 + 2 * 256 + 13 + 20
_DIRTY_BITMAP_EOS = int(g.DirtyBitmapFlag.EOS)


class _NeedData(Exception):
    """Internal: the current element is not complete in the buffer."""


def compress_bound(n: int) -> int:
    """zlib's compressBound(), the loader's limit for COMPRESS_PAGE lengths."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


class _Section:
    __slots__ = ("section_id", "idstr", "instance_id", "version_id")

    def __init__(self, section_id, idstr, instance_id, version_id):
        self.section_id = section_id
        self.idstr = idstr
        self.instance_id = instance_id
        self.version_id = version_id


class StreamDecoder:
    """Turns the bytes of one migration stream (main channel) into events."""

    def __init__(
        self,
        *,
        page_size: int | None = None,
        description: dict | None = None,
        allow_hook: bool = False,
        max_description: int = MAX_DESCRIPTION,
    ) -> None:
        self._buf: Any = memoryview(b"")  # the bytes being parsed
        self._pos = 0  # parse position in _buf
        self._base = 0  # stream offset of _buf[0]
        self._elem = 0  # start in _buf of the element being parsed
        self._chunk: memoryview | None = None  # the first fed chunk that _buf does not reach yet
        self._chunk_base = 0  # its stream offset
        self._chunk_used = 0  # how much of it was joined into _buf
        # Chunks fed after it, joined only when an element needs them: joining on
        # every feed would copy a large element once per chunk (quadratic time).
        self._queued: list[memoryview] = []
        self._queued_bytes = 0
        self._retry: tuple[int, int] = (-1, 0)  # (offset, input then) of a grammar parse that needed more
        self._scan: tuple[int, int] = (-1, 0)  # (offset, bytes searched) of an unfinished footer scan
        self._eof = False
        self._failed: StreamError | None = None

        self._state = "header"
        self._packages: list[tuple[int, int]] = []  # (end offset, length)
        self._sections: dict[int, _Section] = {}
        self._section: _Section | None = None  # the one whose payload is being read
        self._footers: bool | None = None
        self.page_size = page_size
        self.page_size_source = "option" if page_size else None
        self._plans: RamPlans | None = None
        self._devices = DeviceIndex(description) if description else None
        if description and not page_size and description_page_size(description):
            self.page_size = description_page_size(description)
            self.page_size_source = "description"
        self._allow_hook = allow_hook
        self._max_description = max_description

        self.configuration: Configuration | None = None
        self.blocks: dict[str, RamBlock] = {}
        self._last_block: str | None = None  # the CONTINUE context, across sections
        self._postcopy_hugepages = False
        self._mapped_ram = False  # capability mapped-ram: MEM_SIZE carries page regions
        self._mapped: MappedRamList | None = None
        self.warnings: list[tuple[int, str]] = []
        self.ram_complete = False  # the RAM END section's EOS was seen

    # --- input -----------------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet decoded."""
        return self._base + self._pos

    def feed(self, data) -> None:
        """Add input; ``b""`` marks the end of input.

        The chunk is parsed in place: keep it unchanged until its events are used.
        """
        if not len(data):
            self._eof = True
            return
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        self._rebase()
        if self._chunk is not None:
            # Fed again before the last chunk was used up: queue this one.
            self._queued.append(view)
            self._queued_bytes += len(view)
        elif self._pos >= len(self._buf):
            self._base += len(self._buf)
            self._buf, self._pos, self._elem = view, 0, 0
        else:
            self._chunk, self._chunk_base, self._chunk_used = view, self._base + len(self._buf), 0

    def _pending(self) -> int:
        """Fed bytes that _buf does not hold yet."""
        if self._chunk is None:
            return 0
        return len(self._chunk) - self._chunk_used + self._queued_bytes

    def _next_chunk(self) -> None:
        # The current chunk is used up (all of it is in _buf, or _buf moved onto it):
        # the next queued one takes its place.
        self._chunk_base += len(self._chunk)
        self._chunk_used = 0
        if self._queued:
            self._chunk = self._queued.pop(0)
            self._queued_bytes -= len(self._chunk)
        else:
            self._chunk = None

    def _grow(self) -> bool:
        """Join the current element's bytes with more of the fed chunks (a copy of
        the element only).  False when there is nothing more to join."""
        if self._chunk is not None and self._chunk_used >= len(self._chunk):
            self._next_chunk()
        chunk = self._chunk
        if chunk is None:
            return False
        tail = self._buf[self._elem :]
        take = max(65536, 2 * len(tail))  # geometric growth: linear copying in total
        pieces = [tail]
        while take > 0 and self._chunk is not None:
            piece = self._chunk[self._chunk_used : self._chunk_used + take]
            pieces.append(piece)
            self._chunk_used += len(piece)
            take -= len(piece)
            if take > 0 and self._queued:
                self._next_chunk()
            else:
                break
        self._base += self._elem
        self._pos -= self._elem
        self._elem = 0
        self._buf = memoryview(b"".join(pieces))
        return True

    def _rebase(self) -> None:
        # At an element boundary past the joined bytes: parse the chunk in place again.
        if self._chunk is not None and self.offset >= self._chunk_base:
            self._pos = self.offset - self._chunk_base
            self._base = self._chunk_base
            self._buf = self._chunk
            self._chunk_used = len(self._chunk)
            self._next_chunk()
            self._elem = self._pos

    def _need(self, n: int) -> None:
        """Make sure n bytes are available at _pos, within the current package."""
        if self._packages:
            end = self._packages[-1][0]
            if self._base + self._pos + n > end:
                raise StreamError(
                    f"element runs past the end of the PACKAGED data at 0x{end:x}",
                    self.offset,
                    section=self._section.idstr if self._section else None,
                )
        while self._pos + n > len(self._buf):
            if not self._eof and self._pos + n > len(self._buf) + self._pending():
                raise _NeedData  # wait for enough input before joining anything
            if not self._grow():
                if self._eof:
                    raise TruncatedStream(
                        f"stream ends inside an element (needs {n} bytes, {len(self._buf) - self._pos} left)",
                        self.offset,
                        section=self._section.idstr if self._section else None,
                    )
                raise _NeedData

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
        except _NeedData:
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

    # Each _st_* method parses one element at _pos (raising _NeedData if it is
    # incomplete) and returns its event.

    def _u8(self) -> int:
        self._need(1)
        v = self._buf[self._pos]
        self._pos += 1
        return v

    def _unpack(self, fmt: struct.Struct) -> int:
        self._need(fmt.size)
        (v,) = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return v

    def _idstr(self) -> str:
        n = self._unpack(IDSTR_LENGTH)
        self._need(n)
        s = bytes(self._buf[self._pos : self._pos + n]).decode("latin-1")
        self._pos += n
        return s

    def _construct(self, con, limit: int, **params) -> Any:
        """Parse a rare, variable-size element with the grammar itself."""
        if self._packages:
            limit = min(limit, self._packages[-1][0] - self.offset)
        avail = len(self._buf) - self._pos
        if avail < limit and not self._eof:
            # An earlier attempt at this element needed more input: try again only
            # once the input has doubled, so small feeds cost linear time in total.
            have = avail + self._pending()
            if self._retry[0] == self.offset and have < 2 * self._retry[1]:
                raise _NeedData
            self._retry = (self.offset, have)
        while avail < limit and self._grow():  # at EOF too: input already fed must be joined
            avail = len(self._buf) - self._pos
        view = self._buf[self._pos : self._pos + min(avail, limit)]
        stream = io.BytesIO(view)
        try:
            obj = con.parse_stream(stream, **params)
        except ConstructStreamError as exc:
            if avail < limit and not self._eof:
                raise _NeedData from exc
            raise TruncatedStream(f"stream ends inside an element ({exc.__class__.__name__})", self.offset) from exc
        self._pos += stream.tell()
        return obj

    def _st_header(self):
        off = self.offset
        magic = self._unpack(struct.Struct(">I"))
        version = self._unpack(struct.Struct(">I"))
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
            sec = _Section(sid, idstr, instance_id, version_id)
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
                    raise _NeedData
            self._pos += min(self._skip_end - self.offset, len(self._buf) - self._pos)
        end, length = self._packages.pop()
        self._state = "top"
        return PackageEnd(end, length)

    def _open_section(self, off: int, typ: ST, sec: _Section) -> SectionStart:
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

    # --- the configuration section and commands ----------------------------------

    def _configuration(self, off: int) -> Configuration:
        n = self._unpack(struct.Struct(">I"))
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

    def _command(self, off: int) -> CommandEvent:
        self._need(g.CommandHeader.sizeof())
        head = g.CommandHeader.parse(self._buf[self._pos : self._pos + g.CommandHeader.sizeof()])
        cmd, length = head.cmd, head.length
        self._need(4 + length)
        self._check_command_length(off, cmd, length)
        try:
            obj = self._construct(g.CommandElement, 4 + length)
        except ConstructError as exc:
            raise StreamError(f"malformed command {cmd}: {exc}", off, section="command") from exc
        body = obj.payload.body
        fields = {
            k: (bytes(v) if isinstance(v, (bytes, bytearray)) else v)
            for k, v in (body.items() if hasattr(body, "items") else {"data": body}.items())
            if not k.startswith("_")
        }
        if "ranges" in fields:
            fields["ranges"] = [(r.start, r.length) for r in fields["ranges"]]
        self._check_command(off, cmd, length, fields)
        if cmd == g.Command.PACKAGED:
            if len(self._packages) >= MAX_PACKAGE_DEPTH:
                raise StreamError("PACKAGED commands nested too deep", off, section="command")
            end = self.offset + fields["length"]
            if self._packages and end > self._packages[-1][0]:
                raise StreamError("PACKAGED data runs past its enclosing package", off, section="command")
            self._packages.append((end, fields["length"]))
        return CommandEvent(off, cmd, length, fields)

    _COMMAND_LENGTHS = {
        g.Command.OPEN_RETURN_PATH: 0,
        g.Command.PING: 4,
        g.Command.POSTCOPY_LISTEN: 0,
        g.Command.POSTCOPY_RUN: 0,
        g.Command.PACKAGED: 4,
        g.Command.ENABLE_COLO: 0,
        g.Command.POSTCOPY_RESUME: 0,
        g.Command.SWITCHOVER_START: 0,
    }

    def _check_command_length(self, off: int, cmd: int, length: int) -> None:
        # loadvm_process_command's checks, before the payload is read.
        try:
            name = g.Command(cmd).name
        except ValueError:
            raise StreamError(f"MIG_CMD 0x{cmd:x} unknown (len 0x{length:x})", off, section="command")
        if cmd == g.Command.INVALID:
            raise StreamError(f"MIG_CMD 0x{cmd:x} unknown (len 0x{length:x})", off, section="command")
        want = self._COMMAND_LENGTHS.get(cmd)
        if want is not None and length != want:
            raise StreamError(
                f"{name} received with bad length - expecting {want}, got {length}", off, section="command"
            )
        if cmd == g.Command.POSTCOPY_ADVISE and length not in (0, 16):
            raise StreamError(
                f"POSTCOPY_ADVISE received with bad length - expecting 0 or 16, got {length}", off, section="command"
            )

    def _check_command(self, off: int, cmd: int, length: int, fields: dict) -> None:
        if cmd == g.Command.POSTCOPY_ADVISE:
            summary = fields.get("ram_pagesize_summary")
            tps = fields.get("target_page_size")
            if tps is not None:
                if self.page_size is None:
                    self.page_size, self.page_size_source = tps, "postcopy-advise"
                self._postcopy_hugepages = summary is not None and summary != tps
        elif cmd == g.Command.POSTCOPY_RAM_DISCARD:
            if length < 20 or (length - 3 - len(fields["idstr"])) % 16:
                raise StreamError(f"POSTCOPY_RAM_DISCARD received with bad length {length}", off, section="command")
            if fields["version"] != 0 or fields["terminator"] != 0:
                raise StreamError("POSTCOPY_RAM_DISCARD with bad version or name terminator", off, section="command")
        elif cmd == g.Command.RECV_BITMAP:
            if length != len(fields["idstr"]) + 1:
                raise StreamError(f"RECV_BITMAP received with bad length {length}", off, section="command")

    # --- section ends --------------------------------------------------------------

    def _st_footer(self):
        sec = self._section
        off = self.offset
        self._need(1)
        has = self._buf[self._pos] == ST.FOOTER
        if self._footers is None:
            self._footers = bool(has)
        if self._footers:
            if not has:
                raise StreamError(f"Missing section footer for {sec.idstr}", off, section=sec.idstr)
            self._need(5)
            (sid,) = SECTION_ID.unpack_from(self._buf, self._pos + 1)
            if sid != sec.section_id:
                raise StreamError(
                    f"Mismatched section id in footer for {sec.idstr} - read 0x{sid:x} expected 0x{sec.section_id:x}",
                    off,
                    section=sec.idstr,
                )
            self._pos += 5
        self._state = "top"
        self._section = None
        return SectionEnd(off, sec.section_id, sec.idstr, bool(self._footers))

    # --- block migration (the "block" section, migration/block.c block_load) ---------

    def _st_block(self):
        sec = self._section
        off = self.offset
        value_flags = self._unpack(BLOCK_HEADER)
        flags = value_flags & ((1 << g.BLOCK_SECTOR_BITS) - 1)
        value = value_flags >> g.BLOCK_SECTOR_BITS
        device = None
        data = memoryview(b"")
        if flags & g.BlockFlag.DEVICE_BLOCK:
            device = self._idstr()
            if not flags & g.BlockFlag.ZERO_BLOCK:
                self._need(g.BLOCK_CHUNK)
                data = self._buf[self._pos : self._pos + g.BLOCK_CHUNK]
                self._pos += g.BLOCK_CHUNK
        elif not flags & (g.BlockFlag.PROGRESS | g.BlockFlag.EOS):
            raise StreamError(f"Unknown block migration flags: {flags:#x}", off, section=sec.idstr)
        if flags & g.BlockFlag.EOS:
            self._state = "footer"
        return BlockRecord(off, sec.section_id, flags, value, device, data)

    # --- dirty bitmaps (the "dirty-bitmap" section, block-dirty-bitmap.c dirty_bitmap_load)

    def _st_dirty_bitmap(self):
        sec = self._section
        off = self.offset
        self._need(1)
        if self._buf[self._pos] == _DIRTY_BITMAP_EOS:
            # A lone EOS flags byte is a whole record: every iteration of a stopped VM
            # sends a PART with just that (thousands per stream), so skip the grammar.
            self._pos += 1
            self._state = "footer"
            return DirtyBitmapRecord(off, sec.section_id, _DIRTY_BITMAP_EOS)
        try:
            head = self._construct(g.DirtyBitmapRecordHead, _DIRTY_BITMAP_HEAD_MAX)
        except ConstructError as exc:
            raise StreamError(f"malformed dirty-bitmap record: {exc}", off, section=sec.idstr) from exc
        start, bits = head.start, head.bits
        if start is not None and start.bitmap_flags & g.DIRTY_BITMAP_START_RESERVED:
            raise StreamError(
                f"Unknown flags in migrated dirty bitmap header: {start.bitmap_flags:x}", off, section=sec.idstr
            )
        data = memoryview(b"")
        if bits is not None and bits.buffer_size is not None:
            if bits.buffer_size > g.DIRTY_BITMAP_MAX_BUFFER:
                raise StreamError(
                    f"Bitmap migration stream buffer allocation request is too large ({bits.buffer_size} bytes)",
                    off,
                    section=sec.idstr,
                )
            self._need(bits.buffer_size)
            data = self._buf[self._pos : self._pos + bits.buffer_size]
            self._pos += bits.buffer_size
        if head.flags & _DIRTY_BITMAP_EOS:
            self._state = "footer"
        return DirtyBitmapRecord(
            off,
            sec.section_id,
            head.flags,
            head.node,
            head.bitmap,
            start.granularity if start is not None else None,
            start.bitmap_flags if start is not None else None,
            bits.start_sector if bits is not None else None,
            bits.nr_sectors if bits is not None else None,
            data,
        )

    # --- device (non-RAM) sections -------------------------------------------------

    def _st_device(self):
        sec = self._section
        off = self.offset
        size = None
        framing = None
        if self._section_type == ST.FULL and self._devices is not None:
            size = self._devices.next_size(sec.idstr, sec.instance_id)
            if size is not None:
                self._need(size + (5 if self._footers is not False else 0))
                if self._footers is not False and not self._footer_at(off + size, sec.section_id):
                    size = None  # the description does not match: fall back to the scan
                else:
                    framing = "description"
        if size is None and self._footers is not False:
            size = self._scan_footer(sec.section_id)
            framing = "footer-scan"
            if size is None and self._footers:
                # Earlier sections had footers, so this one has one too, unless the
                # input was cut (QEMU: "Missing section footer" / an early end).
                raise TruncatedStream(
                    f"stream ends inside device section '{sec.idstr}' (no section footer before the end of the input)",
                    off,
                    section=sec.idstr,
                )
        if size is None:
            self._state = "done"
            why = "no JSON description and no section footers" if self._footers is False else "its footer was not found"
            return Undecoded(
                off,
                f"device section '{sec.idstr}' cannot be framed ({why}); device sections from here on were not decoded",
            )
        data = self._buf[self._pos : self._pos + size]
        self._pos += size
        self._state = "footer"
        return DeviceState(off, sec.section_id, sec.idstr, sec.instance_id, size, framing, data, self._section_type)

    def _footer_at(self, stream_off: int, section_id: int) -> bool:
        i = stream_off - self._base
        if i + 5 > len(self._buf):
            return False
        return self._buf[i] == ST.FOOTER and SECTION_ID.unpack_from(self._buf, i + 1)[0] == section_id

    def _scan_footer(self, section_id: int) -> int | None:
        """Payload size of the current section, found by searching for its footer:
        0x7e + be32 section id, followed by a byte that can start the next
        top-level element.  Section ids are unique, which makes false hits rare."""
        needle = bytes([ST.FOOTER]) + SECTION_ID.pack(section_id)
        # Resume an attempt that needed more input: every position before
        # ``searched - 5`` is decided (no footer there).
        searched = self._scan[1] if self._scan[0] == self.offset else 0
        while True:
            end = min(len(self._buf) - self._pos, MAX_FOOTER_SCAN + 6)
            lo = max(0, searched - 5)
            hay = bytes(self._buf[self._pos + lo : self._pos + end])
            at = hay.find(needle)
            while 0 <= at and lo + at + 5 < end:
                if hay[at + 5] in _TOP_TYPES:
                    self._scan = (-1, 0)
                    return lo + at
                at = hay.find(needle, at + 1)
            if end > MAX_FOOTER_SCAN:
                raise StreamError(
                    f"no footer for section '{self._section.idstr}' within {MAX_FOOTER_SCAN} bytes",
                    self.offset,
                    section=self._section.idstr,
                )
            searched = end
            self._scan = (self.offset, searched)
            # Join more only once it at least doubles what was searched (linear total).
            if not self._eof and self._pending() < searched:
                raise _NeedData
            if not self._grow():
                if self._eof:
                    return lo + at if at >= 0 else None
                raise _NeedData

    # --- the RAM section -----------------------------------------------------------

    def _enter_ram(self, off: int) -> None:
        if self._plans is not None:
            return
        if self.page_size is None and self.configuration and self.configuration.target_page_bits:
            self.page_size = 1 << self.configuration.target_page_bits
            self.page_size_source = "configuration"
        if self.page_size is None:
            size, arch = page_size_for(self.configuration.machine if self.configuration else None)
            if size:
                self.page_size, self.page_size_source = size, f"machine type ({arch})"
            else:
                self.page_size, self.page_size_source = 4096, "default"
                self.warnings.append((off, "target page size unknown; assuming 4096 (use --page-size)"))
        if self.page_size & (self.page_size - 1) or not MIN_PAGE_SIZE <= self.page_size <= MAX_PAGE_SIZE:
            raise StreamError(f"unusable target page size {self.page_size}", off, section="ram")
        self._plans = RamPlans.for_page_size(self.page_size)
        self._walker = RunWalker(self._plans)
        self._mask = self.page_size - 1

    def _st_ram(self):
        buf = self._buf
        pos = self._pos
        off = self._base + pos
        if pos + RAM_HEADER.size <= len(buf) and not self._packages:
            (hdr,) = RAM_HEADER.unpack_from(buf, pos)
            self._pos = pos + RAM_HEADER.size
        else:
            hdr = self._unpack(RAM_HEADER)
        flags = hdr & self._mask
        addr = hdr - flags
        kind = flags & _NOT_CONTINUE
        if kind in _PAGE_KINDS:
            return self._page_record(off, hdr, flags, addr, kind)
        if kind == _EOS:
            self._state = "footer"
            if self._section_type == ST.END:
                self.ram_complete = True
            return RamMarker(off, flags)
        if kind == RamFlag.MEM_SIZE:
            if self._mapped_ram:
                return self._mapped_mem_size(off, addr)
            return self._mem_size(off, addr)
        if kind == RamFlag.MULTIFD_FLUSH:
            if self._mapped_ram:
                raise StreamError(f"Unexpected RAM flags: {flags}", off, section="ram")
            return RamMarker(off, flags)
        if kind == RamFlag.HOOK:
            if not self._allow_hook:
                raise StreamError(
                    "RAM_SAVE_FLAG_HOOK: RDMA hooks don't belong in a file or socket stream (use --rdma to accept)",
                    off,
                    section="ram",
                )
            return RamMarker(off, flags)
        raise StreamError(f"Unknown combination of migration flags: 0x{flags:x}", off, section="ram")

    def _mem_size(self, off: int, total: int) -> RamBlockList:
        ignore_shared = bool(self.configuration and "x-ignore-shared" in self.configuration.capabilities)
        self._pos = off - self._base
        try:
            rec = self._construct(
                g.RamRecord,
                MAX_BLOCK_LIST,
                page_size=self.page_size,
                ignore_shared=ignore_shared,
                postcopy_hugepages=self._postcopy_hugepages,
            )
        except ConstructError as exc:
            raise StreamError(f"malformed RAM block list: {exc}", off, section="ram") from exc
        blocks = tuple(RamBlock(b.idstr, b.used_length, b.page_size, b.addr) for b in (rec.payload.blocks or ()))
        if len(blocks) >= MAX_RAM_BLOCKS and sum(b.used_length for b in blocks) < total:
            raise StreamError(f"MEM_SIZE lists more than {MAX_RAM_BLOCKS} RAM blocks", off, section="ram")
        if sum(b.used_length for b in blocks) != total:
            raise StreamError(
                f"RAM block lengths add up to 0x{sum(b.used_length for b in blocks):x}, MEM_SIZE announced 0x{total:x}",
                off,
                section="ram",
            )
        for b in blocks:
            if b.used_length > MAX_BLOCK_LENGTH:
                raise StreamError(
                    f"RAM block {b.name} of 0x{b.used_length:x} bytes is implausibly large",
                    off,
                    section="ram",
                    block=b.name,
                )
            self.blocks[b.name] = b
        return RamBlockList(off, total, blocks)

    def _page_record(self, off: int, hdr: int, flags: int, addr: int, kind: int):
        if self._mapped_ram and kind != g.RamFlag.COMPRESS_PAGE:
            # ram_load_precopy: mapped-ram pages live in the block regions only.
            raise StreamError(f"Unexpected RAM flags: {flags}", off, section="ram", addr=addr)
        if flags & _CONTINUE:
            block = self._last_block
            if block is None:
                raise StreamError(
                    "Ack, bad migration stream! (CONTINUE with no previous block)", off, section="ram", addr=addr
                )
            if kind in _RUN_KINDS and not self._packages:
                info = self.blocks.get(block)
                if addr < (info.used_length if info is not None else MAX_BLOCK_LENGTH):
                    run = self._scan_run(hdr, kind, block, addr)
                    if run is not None:
                        return run
        else:
            block = self._idstr()
            if self.blocks and block not in self.blocks:
                raise StreamError(f"Can't find block {block}", off, section="ram", block=block, addr=addr)
            self._last_block = block
        info = self.blocks.get(block)
        if info is not None and addr >= info.used_length:
            raise StreamError(f"Illegal RAM offset {addr:x}", off, section="ram", block=block, addr=addr)
        if info is None and addr >= MAX_BLOCK_LENGTH:
            # No MEM_SIZE told the block's length: no block is this large (limits.py).
            raise StreamError(
                f"Illegal RAM offset {addr:x} (beyond the largest block accepted, 0x{MAX_BLOCK_LENGTH:x})",
                off,
                section="ram",
                block=block,
                addr=addr,
            )
        payload_off = self.offset
        if kind == _PAGE:
            n = self.page_size
            self._need(n)
            data = self._buf[self._pos : self._pos + n]
            self._pos += n
            return PageRecord(off, flags, block, addr, payload_off, data)
        if kind == _ZERO:
            fill = self._u8()
            return PageRecord(off, flags, block, addr, payload_off, memoryview(b""), fill)
        if kind == _XBZRLE:
            encoding = self._u8()
            length = self._unpack(struct.Struct(">H"))
            if encoding != g.XBZRLE_ENCODING_FLAG:
                raise StreamError(
                    "Failed to load XBZRLE page - wrong compression!", off, section="ram", block=block, addr=addr
                )
            if length > self.page_size:
                raise StreamError(
                    f"Failed to load XBZRLE page - len overflow! ({length} > {self.page_size})",
                    off,
                    section="ram",
                    block=block,
                    addr=addr,
                )
            self._need(length)
            data = self._buf[self._pos : self._pos + length]
            self._pos += length
            try:
                xbzrle_decode_into(data, bytearray(self.page_size))
            except XbzrleError as exc:
                raise StreamError(
                    f"Failed to load XBZRLE page - decode error! ({exc})", off, section="ram", block=block, addr=addr
                ) from exc
            return PageRecord(off, flags, block, addr, payload_off, data, encoding=encoding)
        # COMPRESS_PAGE
        length = self._unpack(struct.Struct(">I"))
        if length > compress_bound(self.page_size):
            raise StreamError(f"Invalid compressed data length: {length}", off, section="ram", block=block, addr=addr)
        self._need(length)
        data = self._buf[self._pos : self._pos + length]
        self._pos += length
        return PageRecord(off, flags, block, addr, payload_off, data)

    def _scan_run(self, hdr: int, kind: int, block: str, addr: int):
        """Records that continue this one (PAGE or ZERO, CONTINUE, each for the next
        page) as one PageRun; None when fewer than two."""
        pos = self._pos - RAM_HEADER.size
        info = self.blocks.get(block)
        cap = ((info.used_length if info is not None else MAX_BLOCK_LENGTH) - addr) // self.page_size
        n, p, starts, kinds = self._walker.walk(self._buf, pos, addr, cap)
        if n < 2:
            return None
        self._pos = p
        return PageRun(pos + self._base, block, addr, n, self.page_size, self._buf[pos:p], starts, kinds)

    # --- mapped-ram (QEMU 9.0+ file: migration) ---------------------------------------
    # MEM_SIZE becomes a sequence of events: per block a MappedRamBlock (entry, header,
    # bitmap), then its page region passed by as MappedRamPages views (never copied, so
    # holes of an mmap'd file are never touched), then the next entry; RamBlockList last.

    def _mapped_mem_size(self, off: int, total: int):
        self._mapped = MappedRamList(off, total)
        self._state = "mapped_block"
        self._elem = self._pos  # restart point after the MEM_SIZE header
        return self._st_mapped_block()

    def _st_mapped_block(self):
        mr = self._mapped
        if mr.left <= 0:
            self._state = "ram"
            return RamBlockList(mr.offset, mr.total, tuple(mr.blocks))
        off = self.offset
        ignore_shared = bool(self.configuration and "x-ignore-shared" in self.configuration.capabilities)
        try:
            entry = self._construct(
                g.MappedRamBlockEntry,
                512,
                page_size=self.page_size,
                ignore_shared=ignore_shared,
                postcopy_hugepages=False,
            )
        except ConstructError as exc:
            raise StreamError(f"malformed mapped-ram block entry: {exc}", off, section="ram") from exc
        name, used, addr, hdr = entry.idstr, entry.used_length, entry.addr, entry.mapped_ram
        bitmap_size = check_mapped_ram_header(name, used, hdr, self.offset, self.page_size, mr.left, off)
        bitmap = b""
        if hdr.pages_offset:
            gap = hdr.bitmap_offset - self.offset
            self._need(gap + bitmap_size)
            bitmap = bytes(self._buf[self._pos + gap : self._pos + gap + bitmap_size])
            self._pos += gap + bitmap_size
        self.blocks[name] = RamBlock(name, used, None, addr)
        mr.blocks.append(self.blocks[name])
        mr.left -= used
        mr.region = (name, hdr.pages_offset, hdr.pages_offset + used) if hdr.pages_offset else None
        self._state = "mapped_skip" if mr.region else "mapped_block"
        return MappedRamBlock(
            off, name, used, addr, hdr.version, hdr.page_size, hdr.bitmap_offset, hdr.pages_offset, bitmap
        )

    def _mapped_input(self) -> int:
        """Bytes available at _pos, switching to the fed chunk when the joined
        buffer is used up; raises _NeedData (keeping progress) when there are none."""
        if self._pos >= len(self._buf):
            self._rebase()
        avail = len(self._buf) - self._pos
        if avail <= 0:
            if self._eof:
                name = self._mapped.region[0] if self._mapped.region else None
                raise TruncatedStream(
                    "stream ends inside a mapped-ram page region", self.offset, section="ram", block=name
                )
            self._elem = self._pos
            raise _NeedData
        return avail

    def _st_mapped_skip(self):
        # From the end of the bitmap to pages_offset: alignment padding, skipped unread.
        target = self._mapped.region[1]
        while self.offset < target:
            avail = self._mapped_input()
            self._pos += min(target - self.offset, avail)
        self._state = "mapped_pages"
        return self._st_mapped_pages()

    def _st_mapped_pages(self):
        name, start, end = self._mapped.region
        off = self.offset
        if off >= end:
            self._state = "mapped_block"
            return self._st_mapped_block()
        avail = self._mapped_input()
        ps = self.page_size
        n = min(avail, end - off)
        if off + n < end:
            n -= (off + n - start) % ps  # whole pages only
            if n <= 0:
                self._elem = self._pos
                try:
                    self._need(ps)  # a page split between two chunks: join just that page
                except TruncatedStream as exc:
                    raise TruncatedStream(
                        "stream ends inside a mapped-ram page region", off, section="ram", block=name, addr=off - start
                    ) from exc
                n = ps
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return MappedRamPages(off, name, off - start, data)

    # --- after EOF -----------------------------------------------------------------

    def _st_after_eof(self):
        off = self.offset
        if self._pos >= len(self._buf) and not self._grow():
            if self._eof:
                self._state = "done"
                return None
            raise _NeedData
        typ = self._u8()
        if typ != ST.VMDESCRIPTION:
            # QEMU only warns: "Expected vmdescription section, but got %d".
            self.warnings.append((off, f"Expected vmdescription section, but got {typ}"))
            self._state = "done"
            return None
        length = self._unpack(struct.Struct(">I"))
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
        if self._pos >= len(self._buf) and not self._grow():
            if self._eof:
                self._state = "done"
                return None
            raise _NeedData
        self.warnings.append((self.offset, "trailing data after the VMDESCRIPTION"))
        self._state = "done"
        return None


def inflate_page(data, page_size: int) -> bytes:
    """One COMPRESS_PAGE payload: a complete zlib stream of exactly one page."""
    d = zlib.decompressobj()
    out = d.decompress(bytes(data), page_size)
    if not d.eof or len(out) != page_size:
        raise zlib.error(
            f"zlib stream inflates to {len(out)} bytes"
            + ("" if d.eof else " and does not end")
            + f", expected {page_size}"
        )
    return out
