"""migstream: decode, validate and extract QEMU live-migration streams.

``migstream.open(path)`` opens what the command line opens (docs/api.md); the rest of
this namespace is the sans-IO decoder, its events and the encoder.
"""

from typing import TYPE_CHECKING

#: The package version: the one place it is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

if TYPE_CHECKING:  # what __getattr__ below brings, for type checkers
    from .api import Capture as Capture
    from .api import open as open
    from .decode.decoder import StreamDecoder as StreamDecoder
    from .errors import MigstreamError as MigstreamError
    from .errors import StreamError as StreamError
    from .errors import TruncatedStream as TruncatedStream
    from .errors import UsageError as UsageError
    from .events import NEED_DATA as NEED_DATA
    from .events import CommandEvent as CommandEvent
    from .events import Configuration as Configuration
    from .events import DeviceState as DeviceState
    from .events import EndOfStream as EndOfStream
    from .events import FileHeader as FileHeader
    from .events import PackageEnd as PackageEnd
    from .events import PageRecord as PageRecord
    from .events import PageRun as PageRun
    from .events import RamBlock as RamBlock
    from .events import RamBlockList as RamBlockList
    from .events import RamMarker as RamMarker
    from .events import SectionEnd as SectionEnd
    from .events import SectionStart as SectionStart
    from .events import Undecoded as Undecoded
    from .events import VmDescription as VmDescription
    from .events import flag_names as flag_names
    from .wire.grammar import Command as Command
    from .wire.grammar import RamFlag as RamFlag
    from .wire.grammar import SectionType as SectionType

# Every name is imported on first use (PEP 562): `import migstream.cli.info` pays only
# for what the info command needs, not for the decoder, the encoder and the API.
_LAZY = {
    # The sans-IO decoder, its errors and events, and the wire vocabulary.
    "StreamDecoder": "decode.decoder",
    "MigstreamError": "errors",
    "StreamError": "errors",
    "TruncatedStream": "errors",
    "UsageError": "errors",
    "NEED_DATA": "events",
    "CommandEvent": "events",
    "Configuration": "events",
    "DeviceState": "events",
    "EndOfStream": "events",
    "FileHeader": "events",
    "PackageEnd": "events",
    "PageRecord": "events",
    "PageRun": "events",
    "RamBlock": "events",
    "RamBlockList": "events",
    "RamMarker": "events",
    "SectionEnd": "events",
    "SectionStart": "events",
    "Undecoded": "events",
    "VmDescription": "events",
    "flag_names": "events",
    "Command": "wire.grammar",
    "RamFlag": "wire.grammar",
    "SectionType": "wire.grammar",
    # The Python API (migstream/api/): containers, tools and the RAM image.
    "open": "api",
    "Capture": "api",
    # The encoding side.
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
