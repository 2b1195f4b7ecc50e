"""``migstream dump``: the guest-physical memory of a stream as an ELF core, LiME or
raw image (for Volatility, crash, gdb)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from .progress import DecodeProgress
from .progress import stream_size
from .root import WRITE
from .root import InputOptions
from .root import StreamArg
from .root import app
from .root import err
from .root import reads_stream
from .root import run_command

MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="BLOCK[:OFFSET]=GPA",
        help="Put a RAM block (or its part from OFFSET on) at a guest-physical address (repeatable).",
    ),
]
NumaOpt = Annotated[str | None, typer.Option("--numa", metavar="ID,ID,...", help="NUMA memdev blocks in node order.")]
VendorOpt = Annotated[
    str | None, typer.Option("--cpu-vendor", metavar="amd|intel", help="x86 CPU vendor (AMD 1 TiB rule).")
]


def layout_options(maps, numa, vendor):
    """LayoutOptions from the shared options of ``dump`` and ``info``."""
    from ..image.physmap import parse_map_options
    from ..tools.dump import LayoutOptions

    if vendor is not None and vendor not in ("amd", "intel"):
        raise UsageError(f"--cpu-vendor {vendor!r}: one of amd, intel")
    order = [n.strip() for n in numa.split(",") if n.strip()] if numa else None
    return LayoutOptions(parse_map_options(maps), order, vendor)


def physical_map_lines(pmap: dict) -> list[str]:
    if "error" in pmap:
        return [f"physical map     none by default: {pmap['error']}"]
    lines = [f"physical map     {pmap['rule']}"]
    for r in pmap["ranges"]:
        lines.append(f"  0x{r['gpa']:011x}-0x{r['gpa'] + r['size'] - 1:011x}  {r['block']} +0x{r['offset']:x}")
    if pmap["unmapped"]:
        lines.append(f"  not mapped: {', '.join(pmap['unmapped'])}")
    return lines


@app.command(rich_help_panel=WRITE)
@reads_stream()
def dump(
    stream: StreamArg,
    inp: InputOptions,
    output: Annotated[str, typer.Option("-o", "--output", help="Image file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="elf (ELF64 core), raw (offset = GPA) or lime.")] = "elf",
    maps: MapOpt = None,
    numa: NumaOpt = None,
    cpu_vendor: VendorOpt = None,
) -> None:
    """Write the guest-physical memory as an ELF core, LiME or raw image."""

    def go():
        from ..image.physwriter import FORMATS
        from ..tools.dump import dump as do_dump

        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
        layout = layout_options(maps, numa, cpu_vendor)
        prog = DecodeProgress(stream_size(stream), inp.progress) if inp.progress is not False else None
        result = do_dump(
            stream,
            output,
            fmt,
            layout=layout,
            progress=prog,
            **inp.read_kwargs(),
        )
        if prog:
            prog.done()
        for off, msg in result.warnings:
            err(f"warning at offset 0x{off:x}: {msg}")
        if result.map.unmapped:
            err(f"note: not in the image (no guest-physical address): {', '.join(result.map.unmapped)}")
        if result.error:
            err(str(result.error))
            err(f"wrote what was decoded before the error to {output}")
            raise typer.Exit(1)

    run_command(go)
