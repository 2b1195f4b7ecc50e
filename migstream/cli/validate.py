"""``migstream validate``: exit 0 when QEMU's loader would accept the stream."""

from __future__ import annotations

from typing import Annotated

import typer

from ..containers.multifd import with_channels
from ..containers.stream import iter_events
from ..decode.pages import check_page_record
from ..errors import MigstreamError
from ..errors import StreamError
from ..events import EndOfStream
from ..events import PageRecord
from ..events import Undecoded
from ..wire.grammar import RamFlag
from .app import ChannelOpt
from .app import HookOpt
from .app import PageSizeOpt
from .app import ProgressOpt
from .app import SnapshotOpt
from .app import StreamArg
from .app import app
from .app import opened_stream
from .app import run_command
from .app import warn_all


@app.command()
def validate(
    stream: StreamArg,
    page_size: PageSizeOpt = None,
    # None: progress when stderr is a terminal (ProgressOpt is declared bool in app.py).
    progress: ProgressOpt = None,
    rdma: HookOpt = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet")] = False,
    channel: ChannelOpt = None,
    snapshot: SnapshotOpt = None,
) -> None:
    """Exit 0 if QEMU's loader would accept the stream, else 1 with the offset of the fault."""

    def go():
        with opened_stream(stream, page_size, rdma, progress, snapshot) as (source, decoder, prog):
            eof = False
            undecoded = None
            for ev in with_channels(iter_events(source, decoder, prog), channel or source.channel_paths, decoder):
                t = type(ev)
                if t is PageRecord and ev.kind == RamFlag.COMPRESS_PAGE:
                    # The decoder checks XBZRLE deltas itself; a COMPRESS_PAGE stream is
                    # inflated (decode/pages.py) only where the page is wanted: here.
                    check_page_record(ev, decoder.page_size)
                elif t is EndOfStream:
                    eof = True
                elif t is Undecoded:
                    undecoded = ev.reason
            prog.done()
            warn_all(decoder)
            if source.save_image is not None and not source.save_image.complete:
                raise MigstreamError(
                    "libvirt save image is incomplete (magic LibvirtQemudPart: the save "
                    "never finished; libvirt refuses to restore it)"
                )
            if not eof and undecoded is None:
                raise StreamError("stream ends before QEMU_VM_EOF", decoder.offset)
            if not quiet:
                note = f" (RAM checked; {undecoded})" if undecoded else ""
                print(f"ok: {decoder.offset} bytes, valid{note}")

    run_command(go)
