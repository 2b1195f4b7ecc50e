"""migstream: decode, validate and extract QEMU live-migration streams."""

from .decode.decoder import StreamDecoder
from .errors import MigstreamError, StreamError, TruncatedStream, UsageError
from .events import (
    NEED_DATA,
    CommandEvent,
    Configuration,
    DeviceState,
    EndOfStream,
    FileHeader,
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
    flag_names,
)
from .wire.grammar import Command, RamFlag, SectionType

# The encoding side is imported on first use (PEP 562), so that decoding front ends
# start without it.
_LAZY = {
    "BytesSink": "encode.sinks",
    "Encoder": "encode.encoder",
    "FdSink": "encode.sinks",
    "RamStats": "encode.stats",
    "encode_stream": "encode.encoder",
    "MemoryImage": "encode.memimage",
    "RamBlockImage": "encode.memimage",
    "StreamTemplate": "tools.template",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'migstream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "StreamDecoder",
    "NEED_DATA",
    "MigstreamError",
    "StreamError",
    "TruncatedStream",
    "UsageError",
    "CommandEvent",
    "Configuration",
    "DeviceState",
    "EndOfStream",
    "FileHeader",
    "PackageEnd",
    "PageRecord",
    "PageRun",
    "RamBlock",
    "RamBlockList",
    "RamMarker",
    "SectionEnd",
    "SectionStart",
    "Undecoded",
    "VmDescription",
    "flag_names",
    "Command",
    "RamFlag",
    "SectionType",
    "Encoder",
    "encode_stream",
    "RamStats",
    "BytesSink",
    "FdSink",
    "MemoryImage",
    "RamBlockImage",
    "StreamTemplate",
]
