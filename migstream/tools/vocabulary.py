"""The words users see for sizes (one formatter for the CLI, the report and the TUI)."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: float, compact: bool = False) -> str:
    """``1536`` -> ``1.5 KiB`` (``compact``: ``1.5K``, for narrow TUI columns)."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            if compact:
                unit = unit[0]
                return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
