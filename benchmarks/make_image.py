#!/usr/bin/env python3
"""Write a deterministic guest-RAM image for the migstream benchmarks.

The image is a sequence of 4 KiB pages.  In the default ``mixed`` kind
50 % of the pages are all-zero, 30 % are random bytes (seeded) and 20 % are
ASCII prose-like text that differs from page to page.  The three kinds are
interleaved in a deterministic pseudo-random order (a seeded permutation),
not laid out as three contiguous regions.

Other kinds: ``zero`` (every page zero; written as a sparse file) and
``random`` (every page random bytes), used for the info/validate
throughput figures.

The same --seed, --size and --kind always give the same bytes, independent
of the machine (numpy's PCG64 with per-chunk seeds).

    python3 benchmarks/make_image.py /var/tmp/migstream-bench/mixed-1g.img
    python3 benchmarks/make_image.py --kind random /var/tmp/migstream-bench/raw-1g.img
    python3 benchmarks/make_image.py --size 64M --manifest m.json small.img
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

PAGE = 4096
CHUNK_PAGES = 16384  # 64 MiB per write; fixed so output never depends on it
DEFAULT_SEED = 20240601

KIND_ZERO, KIND_RANDOM, KIND_TEXT = 0, 1, 2
KIND_NAMES = {KIND_ZERO: "zero", KIND_RANDOM: "random", KIND_TEXT: "text"}

# Word list for the prose generator (plain ASCII, lower case).
_WORDS = """
the of and to in a is that for it as was with be by on not he this are or
his from at which but have an they you were her she there been one all we
their has would when if so no will can more about said up out them some
could into than then its only other time also these two may first any like
new after over our very what where just because most through such those
between both being each few under while might must should still again never
machine memory page stream section device migration guest host register
buffer state version field record block offset length value header footer
zero random text image decoder encoder kernel driver network storage disk
queue timer clock interrupt vector table entry pointer address region bank
ancient river mountain garden window letter morning evening summer winter
village harbour lantern market station bridge forest meadow island valley
quietly slowly carefully suddenly gently rarely often always sometimes
bright dark silent heavy narrow broad golden hollow steady restless
remember consider discover follow gather measure notice promise wonder
""".split()
_PUNCT = [b". ", b", ", b"; ", b". ", b"! ", b"? ", b": ", b". "]


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if text.endswith(suffix):
            mult, text = m, text[:-1]
            break
    value = int(float(text) * mult)
    if value <= 0 or value % PAGE:
        raise argparse.ArgumentTypeError(f"size must be a positive multiple of {PAGE}")
    return value


def page_kinds(n_pages: int, seed: int, zero_pct: int, random_pct: int) -> np.ndarray:
    """Deterministic interleaved kind of every page (uint8 array)."""
    n_zero = n_pages * zero_pct // 100
    n_random = n_pages * random_pct // 100
    n_text = n_pages - n_zero - n_random
    kinds = np.empty(n_pages, dtype=np.uint8)
    kinds[:n_zero] = KIND_ZERO
    kinds[n_zero : n_zero + n_random] = KIND_RANDOM
    kinds[n_zero + n_random :] = KIND_TEXT
    assert n_text >= 0
    rng = np.random.Generator(np.random.PCG64([seed, 0xC0FFEE]))
    return kinds[rng.permutation(n_pages)]


def build_corpus(seed: int, nbytes: int = 8 << 20) -> bytes:
    """A few MiB of sentence-like ASCII text from a seeded word stream."""
    rng = np.random.Generator(np.random.PCG64([seed, 0x7E47]))
    words = [w.encode() for w in _WORDS]
    # Zipf-ish word frequencies so it reads (and compresses) like prose.
    weights = 1.0 / np.arange(1, len(words) + 1) ** 0.9
    weights /= weights.sum()
    n_words = nbytes // 5
    idx = rng.choice(len(words), size=n_words, p=weights)
    sentence_len = rng.integers(5, 18, size=n_words // 5 + 1)
    punct = rng.integers(0, len(_PUNCT), size=len(sentence_len))
    out = bytearray()
    pos = 0
    for s, (slen, p) in enumerate(zip(sentence_len, punct)):
        chunk = [words[i] for i in idx[pos : pos + slen]]
        pos += slen
        if not chunk:
            break
        chunk[0] = chunk[0][:1].upper() + chunk[0][1:]
        out += b" ".join(chunk) + _PUNCT[p]
        if s % 7 == 6:
            out += b"\n"
        if len(out) >= nbytes:
            break
    return bytes(out[:nbytes])


def make_text_pages(corpus: np.ndarray, page_numbers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One text page per page number: a corpus window at a seeded offset,
    headed by the page number, so every page differs."""
    n = len(page_numbers)
    starts = rng.integers(0, len(corpus) - PAGE, size=n)
    idx = starts[:, None] + np.arange(PAGE)[None, :]
    pages = corpus[idx]
    for row, pno in enumerate(page_numbers):
        head = b"[page %08x] " % int(pno)
        pages[row, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    return pages


def write_image(
    path: str, size: int, kind: str, seed: int, zero_pct: int = 50, random_pct: int = 30, want_sha: bool = False
) -> dict:
    n_pages = size // PAGE
    if kind == "mixed":
        kinds = page_kinds(n_pages, seed, zero_pct, random_pct)
    elif kind == "zero":
        kinds = np.full(n_pages, KIND_ZERO, dtype=np.uint8)
    elif kind == "random":
        kinds = np.full(n_pages, KIND_RANDOM, dtype=np.uint8)
    else:
        raise ValueError(kind)

    corpus = None
    if (kinds == KIND_TEXT).any():
        corpus = np.frombuffer(build_corpus(seed), dtype=np.uint8)

    sha = hashlib.sha256() if want_sha else None
    zero_chunk = bytes(CHUNK_PAGES * PAGE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.truncate(size)  # sparse; zero pages are simply skipped
        for c0 in range(0, n_pages, CHUNK_PAGES):
            ck = kinds[c0 : c0 + CHUNK_PAGES]
            npg = len(ck)
            if not ck.any():
                if sha:
                    sha.update(zero_chunk[: npg * PAGE])
                continue
            rng = np.random.Generator(np.random.PCG64([seed, 1, c0 // CHUNK_PAGES]))
            buf = np.zeros((npg, PAGE), dtype=np.uint8)
            rnd = np.flatnonzero(ck == KIND_RANDOM)
            if len(rnd):
                buf[rnd] = rng.integers(0, 256, size=(len(rnd), PAGE), dtype=np.uint8)
            txt = np.flatnonzero(ck == KIND_TEXT)
            if len(txt):
                buf[txt] = make_text_pages(corpus, c0 + txt, rng)
            data = buf.tobytes()
            if sha:
                sha.update(data)
            f.seek(c0 * PAGE)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    counts = {KIND_NAMES[k]: int((kinds == k).sum()) for k in KIND_NAMES}
    info = {
        "path": os.path.abspath(path),
        "size": size,
        "page_size": PAGE,
        "pages": n_pages,
        "kind": kind,
        "seed": seed,
        "page_counts": counts,
    }
    if sha:
        info["sha256"] = sha.hexdigest()
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="image file to write")
    ap.add_argument("--size", type=parse_size, default=1 << 30, help="image size, e.g. 1G, 64M (default 1G)")
    ap.add_argument("--kind", choices=["mixed", "zero", "random"], default="mixed")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--zero-pct", type=int, default=50)
    ap.add_argument("--random-pct", type=int, default=30, help="text gets the rest (default 20)")
    ap.add_argument("--sha256", action="store_true", help="also hash the image")
    ap.add_argument("--manifest", help="write a JSON description of the image here")
    args = ap.parse_args(argv)
    if args.zero_pct + args.random_pct > 100:
        ap.error("--zero-pct + --random-pct must be <= 100")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    t0 = time.perf_counter()
    info = write_image(args.output, args.size, args.kind, args.seed, args.zero_pct, args.random_pct, args.sha256)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    if args.manifest:
        with open(args.manifest, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
