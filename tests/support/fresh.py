"""Commands whose memory limit must count their own memory only.

libFuzzer's ``-rss_limit_mb`` reads the process's peak RSS (``ru_maxrss``), and
Linux carries that peak across ``execve`` from the memory the process had before
it: a fuzzer started straight from a pytest process that holds 1.2 GB (late in a
full run) reports 1.2 GB before its first input and stops at once with
"out-of-memory".  Started from a small shell that forks it, the fuzzer's peak begins
at the shell's few megabytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fresh_process(args: list[str]) -> list[str]:
    """``args`` run as the child of a small ``sh`` (its exit status is the child's)."""
    return ["sh", "-c", '"$@" & wait $!', "sh", *args]


def atheris_run(fuzzer: str, tmp_path: Path, options: list[str], timeout: float) -> subprocess.CompletedProcess:
    """A bounded libFuzzer run of the atheris harness ``fuzzer`` on its own seed corpus
    (``--seeds``), 1 GiB of RSS and 10 s per input at most, findings written to
    ``tmp_path``; ``options`` bound the run (-runs, -max_total_time, -max_len, -dict)."""
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    corpus.mkdir()
    subprocess.run([sys.executable, fuzzer, "--seeds", str(seeds)], check=True, capture_output=True)
    command = [sys.executable, fuzzer, str(corpus), str(seeds), *options]
    command += ["-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/"]
    return subprocess.run(fresh_process(command), capture_output=True, text=True, timeout=timeout)
