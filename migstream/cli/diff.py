"""``migstream diff A B``: what differs between two saves' memory and configuration.

Exit codes follow cmp(1): 0 equal, 1 different, 2 trouble (unreadable input,
invalid stream).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from .jsonout import print_json
from .progress import DecodeProgress
from .progress import stream_size
from .root import INSPECT
from .root import InputOptions
from .root import app
from .root import reads_stream
from .root import run_command

SideArg = Annotated[
    str,
    typer.Argument(
        metavar="SIDE",
        help="A stream (file, .gz/.bz2/.xz/.zst, capture directory, - for stdin), STREAM@N (after N RAM "
        "iterations), or an extract directory.",
    ),
]


def _human_range(start: int, end: int) -> str:
    return f"{start:#x}-{end:#x}"


def _ranges_text(ranges: list, max_ranges: int) -> str:
    """``N ranges: a-b, c-d ... and M more`` for (start, end) byte ranges."""
    shown = ranges[:max_ranges]
    more = f" ... and {len(ranges) - len(shown)} more" if len(ranges) > len(shown) else ""
    return f"{len(ranges)} ranges: " + ", ".join(_human_range(s, e) for s, e in shown) + more


def _print(result, max_ranges: int) -> None:
    a, b = result.a, result.b
    print(f"a: {a.label}  ({a.machine or '?'}, page size {a.page_size})")
    print(f"b: {b.label}  ({b.machine or '?'}, page size {b.page_size})")
    for side in (a, b):
        if not side.complete:
            print(f"note: {side.label} is incomplete (extract manifest says complete: false)")
    if result.equal:
        print("equal: same configuration, same RAM blocks, same memory" + (", same disks" if a.disks else ""))
        return
    for c in result.config:
        print(f"configuration {c['field']}: {c['a']!r} -> {c['b']!r}")
    for name in result.removed:
        print(f"block removed: {name} ({a.blocks[name][1]:#x} bytes)")
    for name in result.added:
        print(f"block added: {name} ({b.blocks[name][1]:#x} bytes)")
    for r in result.resized:
        print(f"block resized: {r['block']}: {r['a']:#x} -> {r['b']:#x}")
    for d in result.pages:
        print(f"block {d.name}: {d.pages} pages differ in {_ranges_text(d.ranges, max_ranges)}")
    for d in result.disks:
        if d["change"] == "differs":
            ranges = [(r["start"], r["end"]) for r in d["ranges"]]
            print(
                f"disk {d['device']}: {d['blocks']} blocks of {d['block_size']} bytes differ in "
                f"{_ranges_text(ranges, max_ranges)}"
            )
        else:
            sizes = " -> ".join(f"{d[k]:#x}" for k in ("a", "b") if k in d)
            print(f"disk {d['device']}: {d['change']} ({sizes} bytes)")
    for dev in result.devices:
        head = f"device {dev['device']} instance {dev['instance_id']}"
        if dev["change"] != "changed":
            print(f"{head}: {dev['change']}")
            continue
        fields = dev["fields"]
        shown = ", ".join(
            f"{f['field'] or '(state)'} {_short(f['a'])} -> {_short(f['b'])}" for f in fields[:max_ranges]
        )
        more = f" ... and {len(fields) - max_ranges} more" if len(fields) > max_ranges else ""
        print(f"{head}: {len(fields)} fields differ: {shown}{more}")
    if not result.devices_compared:
        print("note: device state not compared (a side is an extract directory, STREAM@N or stdin)")


def _short(v) -> str:
    text = f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


@app.command("diff", rich_help_panel=INSPECT)
@reads_stream()
def diff_command(
    side_a: SideArg,
    side_b: SideArg,
    inp: InputOptions,
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable output, every range (docs/json.md).")
    ] = False,
    max_ranges: Annotated[int, typer.Option("--max-ranges", min=0, help="Ranges listed per block in text output.")] = 8,
) -> None:
    """Compare two saves: configuration, RAM blocks added/removed/resized, pages that differ,
    device state field by field.

    Exit 0 when equal, 1 when different, 2 on unreadable input or an invalid stream.
    A multifd side is given as its capture directory (which brings its channel files):
    --channel cannot say which side a file belongs to."""
    from ..tools.diff import diff as do_diff  # engine imported on use: the CLI starts faster

    def go():
        if inp.channel:
            raise UsageError("diff: --channel cannot say which side a file belongs to; give a capture directory")
        return do_diff(
            side_a,
            side_b,
            page_size=inp.page_size,
            allow_hook=inp.rdma,
            progress=lambda spec: DecodeProgress(stream_size(spec), inp.progress),
        )

    result = run_command(go, trouble=2, json_out=json_out)
    if json_out:
        print_json(result.as_dict())
    else:
        _print(result, max_ranges)
    raise typer.Exit(0 if result.equal else 1)
