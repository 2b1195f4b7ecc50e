"""Commands (QEMU_VM_COMMAND, savevm.c loadvm_process_command): their length
checks, their fields, and the PACKAGED windows they open."""

from __future__ import annotations

from typing import Any

from construct import ConstructError

from ..errors import StreamError
from ..events import CommandEvent
from ..wire import grammar as g
from ..wire.limits import MAX_PACKAGE_DEPTH
from .state import DecoderState


class CommandReader(DecoderState):
    """Reads one command element."""

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
        fields: dict[str, Any] = {
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
        elif cmd == g.Command.POSTCOPY_LISTEN:
            self._postcopy_listening = True
        elif cmd == g.Command.POSTCOPY_RUN:
            self._postcopy_running = True
            if self._packages:
                # loadvm_postcopy_handle_run returns LOADVM_QUIT: the loader stops
                # reading the package there (savevm.c); its rest is skipped.
                self._skip_end = self._packages[-1][0]
                self._state = "skip"
        return CommandEvent(off, cmd, length, fields)

    _COMMAND_LENGTHS: dict[int, int] = {
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
            raise StreamError(f"MIG_CMD 0x{cmd:x} unknown (len 0x{length:x})", off, section="command") from None
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
