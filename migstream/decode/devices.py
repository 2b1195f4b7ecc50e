"""Device (non-RAM) sections, framed by the JSON description or by a scan for
their footer, and the section footer itself (savevm.c check_section_footer)."""

from __future__ import annotations

from ..errors import StreamError
from ..errors import TruncatedStream
from ..events import DeviceState
from ..events import SectionEnd
from ..events import Undecoded
from ..wire import grammar as g
from ..wire.fastpath import SECTION_ID
from ..wire.limits import MAX_FOOTER_SCAN
from ..wire.limits import MAX_PBS_STATE
from .input import NeedData
from .state import DecoderState

ST = g.SectionType
_TOP_TYPES = frozenset({ST.EOF, ST.START, ST.PART, ST.END, ST.FULL, ST.COMMAND})


class DeviceSectionReader(DecoderState):
    """Reads a device section's payload as one opaque element, and section footers."""

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

    def _st_device(self):
        sec = self._section
        off = self.offset
        size = None
        framing = None
        if sec.idstr == g.PBS_STATE_SECTION and self._section_type != ST.FULL:
            # Framed by its own length (pve-qemu pbs-state.c pbs_state_save_setup: be64 + blob).
            self._need(8)
            blob = int.from_bytes(self._buf[self._pos : self._pos + 8], "big")
            if blob > MAX_PBS_STATE:
                raise StreamError(f"pbs-state blob of {blob} bytes (limit {MAX_PBS_STATE})", off, section=sec.idstr)
            size, framing = 8 + blob, "pbs-state"
            self._need(size)
        elif self._section_type == ST.FULL and self._devices is not None:
            size = self._devices.next_size(sec.idstr, sec.instance_id)
            if size is not None:
                self._need(size + (5 if self._footers is not False else 0))
                if self._footers is not False and not self._footer_at(off + size, sec.section_id):
                    end = off + size - self._base
                    if self._buf[end] == ST.FOOTER:
                        # The payload ends where described, in a footer of another
                        # section id: QEMU's check_section_footer.
                        (sid,) = SECTION_ID.unpack_from(self._buf, end + 1)
                        raise StreamError(
                            f"Mismatched section id in footer for {sec.idstr} - read 0x{sid:x} "
                            f"expected 0x{sec.section_id:x}",
                            off + size,
                            section=sec.idstr,
                        )
                    size = None  # the description does not match: fall back to the scan
                else:
                    framing = "description"
        if size is None and self._footers is not False:
            size = self._scan_footer(sec.section_id)
            framing = "footer-scan"
            if self._devices is None:
                # The payload's length is not known: a footer of another id inside
                # it (a section id off by one) goes unseen.
                self.payloads_searched = True
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
                idstr = self._where()
                raise StreamError(
                    f"no footer for section '{idstr}' within {MAX_FOOTER_SCAN} bytes", self.offset, section=idstr
                )
            searched = end
            self._scan = (self.offset, searched)
            # Join more only once it at least doubles what was searched (linear total).
            if not self._eof and self._pending() < searched:
                raise NeedData
            if not self._grow():
                if self._eof:
                    return lo + at if at >= 0 else None
                raise NeedData
