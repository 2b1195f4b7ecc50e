"""migstream: decode, validate and extract QEMU live-migration streams."""

from .decoder import StreamDecoder
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
from .grammar import Command, RamFlag, SectionType
from .encoder import BytesSink, Encoder, FdSink, RamStats, encode_stream
from .memimage import MemoryImage, RamBlockImage
from .template import StreamTemplate

__all__ = [
    "StreamDecoder", "NEED_DATA", "MigstreamError", "StreamError", "TruncatedStream", "UsageError",
    "CommandEvent", "Configuration", "DeviceState", "EndOfStream", "FileHeader", "PackageEnd",
    "PageRecord", "PageRun", "RamBlock", "RamBlockList", "RamMarker", "SectionEnd", "SectionStart",
    "Undecoded", "VmDescription", "flag_names", "Command", "RamFlag", "SectionType",
    "Encoder", "encode_stream", "RamStats", "BytesSink", "FdSink", "MemoryImage", "RamBlockImage", "StreamTemplate",
]
