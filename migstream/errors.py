"""One exception family for everything wrong with a stream."""

from __future__ import annotations


class MigstreamError(Exception):
    """Base class of the library's own errors."""


class StreamError(MigstreamError):
    """The stream is not one QEMU's loader would accept.

    ``offset`` is the byte offset of the element at fault; ``section``, ``block`` and
    ``addr`` (offset inside the block, also named ``page``) are filled in where known.
    ``as_dict()`` is the same as a JSON object (docs/json.md).
    """

    def __init__(
        self,
        message: str,
        offset: int,
        *,
        section: str | None = None,
        block: str | None = None,
        addr: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.section = section
        self.block = block
        self.addr = addr

    @property
    def page(self) -> int | None:
        """The page at fault: its byte offset inside ``block``."""
        return self.addr

    def as_dict(self) -> dict[str, str | int | None]:
        """``{"error", "offset", "section", "block", "page"}``: ``error`` is the one
        line ``str()`` gives (with the place), the others the place alone."""
        return {
            "error": str(self),
            "offset": self.offset,
            "section": self.section,
            "block": self.block,
            "page": self.addr,
        }

    def __str__(self) -> str:
        where = [f"offset 0x{self.offset:x}"]
        if self.section is not None:
            where.append(f"section {self.section}")
        if self.block is not None:
            where.append(f"block {self.block}")
        if self.addr is not None:
            where.append(f"page 0x{self.addr:x}")
        return f"error at {', '.join(where)}: {self.message}"


class TruncatedStream(StreamError):
    """The input ended inside an element (or before QEMU_VM_EOF)."""


class XbzrleError(MigstreamError):
    """An XBZRLE delta that xbzrle_decode_buffer would reject."""


class UsageError(MigstreamError):
    """Bad arguments or unusable local files (not a stream fault)."""


def error_dict(exc: BaseException | str) -> dict[str, str | int | None]:
    """Any error as the JSON object every ``--json`` document uses (docs/json.md):
    ``error`` (the one line), ``offset``, ``section``, ``block``, ``page`` (null
    where not known).  A VmstateError's device is its section."""
    if isinstance(exc, StreamError):
        return exc.as_dict()
    return {
        "error": str(exc),
        "offset": getattr(exc, "offset", None),
        "section": getattr(exc, "section", None) or getattr(exc, "device", None),
        "block": getattr(exc, "block", None),
        "page": getattr(exc, "addr", None),
    }
