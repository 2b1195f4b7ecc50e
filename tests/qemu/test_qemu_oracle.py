"""`migstream validate` against real QEMU as the oracle (tests/support/oracle.py).

Corruptions of real captures (header fields of every element kind, truncations at
element boundaries, spliced sections) are loaded into a paused QEMU 7.2 destination
of the same machine; `validate` must give QEMU's verdict on each.

- the default run: a fixed subset (every 20th corruption of the 7.2 list, about 50);
- ``pytest -m slow tests/qemu/test_qemu_oracle.py``: all of them (about 1000; the
  ``slow`` marker is deselected by addopts in pyproject.toml);
- QEMU 11.1 is not in CI: tests/samples/test_oracle_recorded.py checks `validate`
  against the verdicts recorded once by samples/oracle_verdicts.py.

Allowed besides agreement (docs/validate.md): a stream without a description where
`validate` says "device instance ids not verified", and the listed
``KNOWN_DISAGREEMENTS``, each of which must still disagree.  For such a stream
`validate --description` (a capture of the destination's own devices) is run too and
may leave only the payload lengths unverified.
"""

from __future__ import annotations

import pytest

from support.oracle import QEMU72_TARGETS
from support.oracle import all_corruptions
from support.oracle import classify_row
from support.oracle import known_disagreement
from support.oracle import run_one
from support.qemu import require_qemu

SUBSET_STEP = 20


def _check(rows: list[dict]) -> None:
    wrong = [
        f"{r['name']}: QEMU {r['qemu']} ({r['qemu_error']}), validate {r['validate']} ({r['validate_message']})"
        + (f", with --description {r['described']} ({r['described_message']})" if "described" in r else "")
        + (f" [listed as known: {known_disagreement(r['name'])}]" if known_disagreement(r["name"]) else "")
        for r in rows
        if "wrong" in classify_row(r)
    ]
    assert not wrong, f"{len(wrong)} of {len(rows)} disagree:\n" + "\n".join(wrong)


def _run(names: list[str], table, wd) -> list[dict]:
    require_qemu("qemu-system-x86_64", "qemu-system-aarch64")
    rows = []
    for i, name in enumerate(names):
        target, corruption = table[name]
        rows.append(run_one(target, corruption, wd, f"c{i}"))
    return rows


@pytest.fixture(scope="module")
def table():
    return all_corruptions(QEMU72_TARGETS)


def test_validate_agrees_with_qemu72_subset(table, tmp_path):
    names = sorted(table)[::SUBSET_STEP]
    assert len(names) >= 45
    _check(_run(names, table, tmp_path))


@pytest.mark.slow
def test_validate_agrees_with_qemu72_all(table, tmp_path):
    assert len(table) >= 500
    _check(_run(sorted(table), table, tmp_path))
