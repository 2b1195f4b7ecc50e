#!/usr/bin/env python3
"""Coverage-guided fuzzing of StreamDecoder with atheris (libFuzzer).

The contract (fuzz/harness.py): for any input, decoding either succeeds or raises
the library's own StreamError carrying a byte offset inside the input; nothing
else escapes, nothing hangs (libFuzzer's -timeout), nothing grows without bound
(-rss_limit_mb).  The first input byte picks how the input is fed (whole, split
once, or in small chunks, and a --page-size option) so chunk joining is fuzzed too.

    python fuzz/fuzz_decoder.py CORPUS_DIR [SEED_DIR] [libFuzzer options]
    python fuzz/fuzz_decoder.py --seeds SEED_DIR     # write the seed corpus and exit
    python fuzz/fuzz_decoder.py fuzz/artifacts/crash-...   # replay one input

fuzz/run_long.sh runs it for hours with the right options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["migstream"]):
    from harness import one_input

    import migstream.decode.decoder  # noqa: F401  (instrumented for coverage)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        from seeds import write_corpus

        corpus = Path(sys.argv[2])
        n = write_corpus(corpus, mode_byte=True)
        print(f"{n} seeds in {corpus}")
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
