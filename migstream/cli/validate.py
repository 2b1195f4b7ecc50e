"""``migstream validate``: exit 0 when QEMU's loader would accept the stream."""

from __future__ import annotations

from typing import Annotated

import typer

from ..containers.destination import load_destination
from ..decode.pages import check_page_record
from ..decode.sections import bundled_qemu_versions
from ..errors import MigstreamError
from ..errors import StreamError
from ..events import EndOfStream
from ..events import PageRecord
from ..events import Undecoded
from ..tools.coverage import PageCoverage
from ..tools.coverage import incomplete_ram
from ..tools.coverage import multifd_main_alone
from ..wire.grammar import RamFlag
from .root import INSPECT
from .root import InputOptions
from .root import StreamArg
from .root import app
from .root import err
from .root import reads_stream
from .root import run_command
from .root import warn_all


@app.command(rich_help_panel=INSPECT)
@reads_stream()
def validate(
    stream: StreamArg,
    inp: InputOptions,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing when the stream is valid.")] = False,
    description: Annotated[
        str | None,
        typer.Option(
            "--description",
            metavar="FILE",
            help="The destination's devices: another stream or qcow2 snapshot of the same VM (its "
            "VMDESCRIPTION), or QEMU's -dump-vmstate JSON. For streams without a description (postcopy).",
        ),
    ] = None,
    qemu_version: Annotated[
        str | None,
        typer.Option(
            "--qemu-version",
            metavar="X.Y",
            help="Without a description: judge device names and versions as this QEMU would "
            "(default: the machine type's version).",
        ),
    ] = None,
) -> None:
    """Exit 0 if QEMU's loader would accept the stream, else 1 with the offset of the fault.

    Pages the stream never sends are a warning (QEMU loads it; the destination keeps its
    own contents there), except for a multifd migration's main channel read without its
    channel files (--channel, or a capture directory): the loader would wait for them."""

    def go():
        with inp.open(stream) as (source, decoder, prog):
            destination(decoder, description, qemu_version)
            eof = False
            undecoded = None
            coverage = PageCoverage(decoder)
            for ev in inp.events(source, decoder, prog):
                coverage.add(ev)
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
            if decoder.configuration_missing_at is not None:
                # qemu_loadvm_state; only machine types older than 2.4 omit it.
                raise StreamError("Configuration section missing", decoder.configuration_missing_at)
            if not eof and undecoded is None:
                raise StreamError("stream ends before QEMU_VM_EOF", decoder.offset)
            missing = coverage.missing()
            main_alone = multifd_main_alone(coverage, missing)
            incomplete = incomplete_ram(missing, main_alone and not inp.channels_of(source))
            if incomplete and undecoded is None:
                if main_alone:
                    raise StreamError(incomplete, decoder.offset, section="ram")
                # QEMU loads a stream that leaves pages out (those pages keep the
                # destination's contents): not an error, but never silent.
                kept = "QEMU loads it; those pages keep the destination's contents"
                err(f"warning: {incomplete} ({kept})")
            if not quiet:
                unverified = device_notes(decoder)
                if unverified:
                    print(f"ok: {decoder.offset} bytes ({unverified})")
                else:
                    note = f" (RAM checked; {undecoded})" if undecoded else ""
                    print(f"ok: {decoder.offset} bytes, valid{note}")

    run_command(go)


def destination(decoder, description: str | None, qemu_version: str | None) -> None:
    """--description / --qemu-version: the destination the device headers are judged by."""
    if qemu_version is not None:
        known = bundled_qemu_versions()
        if qemu_version not in known:
            raise MigstreamError(f"--qemu-version {qemu_version}: no bundled registry (have {', '.join(known)})")
        decoder.qemu_version = qemu_version
    if description is not None:
        desc, names = load_destination(description)
        decoder.expect_devices(desc, names)


def device_notes(decoder) -> str | None:
    """What of the device sections could not be verified (decode/sections.py), or None."""
    if decoder.device_checks_missing and not decoder.device_names_checked:
        return f"device sections not verified: {decoder.device_checks_missing}"
    parts = (["instance ids"] if decoder.device_checks_missing else []) + (
        ["payload lengths"] if decoder.payloads_searched else []
    )
    if not parts:
        return None
    names = (
        f"; names and versions checked against {decoder.device_names_checked}" if decoder.device_checks_missing else ""
    )
    return f"device {' and '.join(parts)} not verified: no description{names}"
