"""migstream: decode, validate and extract QEMU live-migration streams.

``migstream.open(path)`` opens what the command line opens (docs/api.md); the rest of
this namespace is the sans-IO decoder, its events and the encoder.
"""

from typing import TYPE_CHECKING

#: The package version: the one place it is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

from .decode.decoder import StreamDecoder
from .errors import MigstreamError
from .errors import StreamError
from .errors import TruncatedStream
from .errors import UsageError
from .events import NEED_DATA
from .events import CommandEvent
from .events import Configuration
from .events import DeviceState
from .events import EndOfStream
from .events import FileHeader
from .events import PackageEnd
from .events import PageRecord
from .events import PageRun
from .events import RamBlock
from .events import RamBlockList
from .events import RamMarker
from .events import SectionEnd
from .events import SectionStart
from .events import Undecoded
from .events import VmDescription
from .events import flag_names
from .wire.grammar import Command
from .wire.grammar import RamFlag
from .wire.grammar import SectionType

if TYPE_CHECKING:  # what __getattr__ below brings, for type checkers
    from .api import Capture as Capture
    from .api import open as open

# The encoding side is imported on first use (PEP 562), so that decoding front ends
# start without it.
_LAZY = {
    # The Python API (migstream/api/): containers, tools and the RAM image, on first use.
    "open": "api",
    "Capture": "api",
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
    "__version__",
    "Capture",
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
