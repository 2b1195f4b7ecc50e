"""``migstream diff A B``: what differs between two saves' memory and configuration.

Exit codes follow cmp(1): 0 equal, 1 different, 2 trouble (unreadable input,
invalid stream).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .cli import PageSizeOpt, _err, app
from .diff import DiffResult, diff as do_diff
from .errors import MigstreamError, StreamError

SideArg = Annotated[str, typer.Argument(
    metavar="SIDE", help="A stream (file, .gz/.xz/.zst, - for stdin), STREAM@N (after N RAM iterations), "
                         "or an extract directory.")]


def _human_range(start: int, end: int) -> str:
    return f"{start:#x}-{end:#x}"


def _print(result: DiffResult, max_ranges: int) -> None:
    a, b = result.a, result.b
    print(f"a: {a.label}  ({a.machine or '?'}, page size {a.page_size})")
    print(f"b: {b.label}  ({b.machine or '?'}, page size {b.page_size})")
    for side in (a, b):
        if not side.complete:
            print(f"note: {side.label} is incomplete (extract manifest says complete: false)")
    if result.equal:
        print("equal: same configuration, same RAM blocks, same memory")
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
        shown = d.ranges[:max_ranges]
        more = f" ... and {len(d.ranges) - len(shown)} more" if len(d.ranges) > len(shown) else ""
        print(f"block {d.name}: {d.pages} pages differ in {len(d.ranges)} ranges: "
              + ", ".join(_human_range(s, e) for s, e in shown) + more)


@app.command("diff")
def diff_command(side_a: SideArg, side_b: SideArg,
                 json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output (every range).")] = False,
                 max_ranges: Annotated[int, typer.Option("--max-ranges", help="Ranges listed per block in text output.")] = 8,
                 page_size: PageSizeOpt = None) -> None:
    """Compare two saves: configuration, RAM blocks added/removed/resized, pages that differ.

    Exit 0 when equal, 1 when different, 2 on unreadable input or an invalid stream."""
    try:
        result = do_diff(side_a, side_b, page_size=page_size)
    except StreamError as exc:
        _err(str(exc))
        raise typer.Exit(2)
    except MigstreamError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2)
    except OSError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2)
    if json_out:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print(result, max_ranges)
    raise typer.Exit(0 if result.equal else 1)
