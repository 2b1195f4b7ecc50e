"""The return path of a migration (destination -> source), as recorded by ``tap``.

Messages are declared in grammar.py (``ReturnPathMessage``): be16 type, be16 length,
payload (migration.c ``migrate_send_rp_message``).
"""

from __future__ import annotations

import io

from construct import ConstructError

from ..errors import StreamError
from ..wire.grammar import ReturnPathMessage
from ..wire.grammar import ReturnPathType


def return_path_messages(data: bytes):
    """(offset, type name, fields) of each return-path message in a tap's ``.return``
    recording (destination -> source bytes of the main channel)."""
    stream = io.BytesIO(data)
    off = 0
    while off < len(data):
        if len(data) - off < 4:
            raise StreamError("return path ends inside a message header", off)
        try:
            stream.seek(off)
            msg = ReturnPathMessage.parse_stream(stream)
        except ConstructError as exc:
            raise StreamError(f"bad return-path message: {exc}", off) from None
        try:
            name = ReturnPathType(msg.type).name
        except ValueError:
            name = f"0x{msg.type:x}"
        body = msg.payload.body
        fields = {k: v for k, v in body.items() if not k.startswith("_")} if hasattr(body, "items") else {}
        yield off, name, fields
        off += 4 + msg.length
