#!/usr/bin/env bash
# A long coverage-guided fuzzing run of the decoder (atheris / libFuzzer).
#
#   fuzz/run_long.sh [SECONDS=3600] [extra libFuzzer options...]
#
# Seeds come from fuzz/seeds.py (writer-built streams, heads and device tails of
# the real samples); the growing corpus stays in fuzz/corpus/ and crashes, hangs
# and memory blow-ups land in fuzz/artifacts/ (both ignored by git).  Replay one
# with:  python fuzz/fuzz_decoder.py fuzz/artifacts/crash-...
# Turn each finding into a regression test in tests/unit/test_fuzz.py.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3600}
shift || true
py=${PYTHON:-.venv/bin/python}
mkdir -p fuzz/corpus fuzz/artifacts
"$py" fuzz/fuzz_decoder.py --seeds fuzz/seed-corpus
exec "$py" fuzz/fuzz_decoder.py fuzz/corpus fuzz/seed-corpus \
    -dict=fuzz/migstream.dict -max_len=131072 -len_control=20 \
    -timeout=10 -rss_limit_mb=2048 -max_total_time="$secs" \
    -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 "$@"
