"""Commands whose memory limit must count their own memory only.

libFuzzer's ``-rss_limit_mb`` reads the process's peak RSS (``ru_maxrss``), and
Linux carries that peak across ``execve`` from the memory the process had before
it: a fuzzer started straight from a pytest process that holds 1.2 GB (late in a
full run) reports 1.2 GB before its first input and stops at once with
"out-of-memory".  Started from a small shell that forks it, the fuzzer's peak begins
at the shell's few megabytes.
"""

from __future__ import annotations


def fresh_process(args: list[str]) -> list[str]:
    """``args`` run as the child of a small ``sh`` (its exit status is the child's)."""
    return ["sh", "-c", '"$@" & wait $!', "sh", *args]
