"""Helpers the benchmark scripts share: best-of-N timing and writing results as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """The shortest wall time of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def write_json(path: str, doc: object) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def finish_report(res: dict, json_path: str | None) -> int:
    """The common end of a benchmark's report: the load average it ran under (on a
    shared machine it explains most of the spread) and the results as JSON."""
    print(f"load average: start {res['load_average_at_start']}, end {res['load_average_at_end']}")
    if json_path:
        write_json(json_path, res)
    return 0
