"""`migstream validate` against the verdicts QEMU 11.1 gave on corruptions of its own
captures (samples/q11-*.mig.zst), recorded once by samples/oracle_verdicts.py into
samples/oracle-11.1.json.zst (QEMU 11.1 is not available in CI).

The ``-nodesc`` targets are the same captures cut after QEMU_VM_EOF (no
VMDESCRIPTION, as postcopy sends them): `validate` judges their device headers by the
bundled registry of QEMU 11.1's devices, and with ``--description`` (the uncut
capture: the destination's devices) must agree but for payload lengths (framed by
a footer search without the stream's own description).

Rerun: ``.venv/bin/python samples/oracle_verdicts.py --qemu 11.1 --capture`` then
``... --qemu 11.1 --out samples/oracle-11.1.json.zst`` (needs /work/qemu11/bin).
"""

from __future__ import annotations

from collections import Counter

from support.oracle import QEMU11_TARGETS
from support.oracle import ROOT
from support.oracle import all_corruptions
from support.oracle import classify
from support.oracle import load_table
from support.oracle import read_sample
from support.oracle import validate_inprocess


def test_validate_agrees_with_recorded_qemu111(tmp_path):
    table = load_table(ROOT / "samples" / "oracle-11.1.json.zst")
    assert table["qemu"] == "11.1"
    verdicts = table["verdicts"]
    corruptions = all_corruptions(QEMU11_TARGETS)
    # The generator still makes exactly the recorded corruptions (stable names).
    assert set(verdicts) == set(corruptions)
    assert len(verdicts) >= 300
    assert Counter(v["qemu"] for v in verdicts.values())["accept"] > 0
    wrong = []
    described = 0
    for name in sorted(verdicts):
        target, corruption = corruptions[name]
        path = tmp_path / "c.mig"
        path.write_bytes(corruption.make())
        got, message = validate_inprocess(path)
        want = verdicts[name]["qemu"]
        if classify(name, want, got, message) == "wrong":
            wrong.append(f"{name}: QEMU 11.1 {want} ({verdicts[name]['error']}), validate {got} ({message})")
        if target.cut_description:
            # The destination's devices: the uncut capture (samples/oracle_verdicts.py
            # --capture made it from a paused VM with the destination's own options).
            desc = tmp_path / target.stream.removesuffix(".zst")
            if not desc.exists():
                desc.write_bytes(read_sample(target.stream))
            got, message = validate_inprocess(path, "--description", str(desc))
            described += 1
            if classify(name, want, got, message) == "wrong":
                wrong.append(
                    f"{name}: QEMU 11.1 {want} ({verdicts[name]['error']}), with --description {got} ({message})"
                )
    assert described >= 150
    assert not wrong, f"{len(wrong)} disagree:\n" + "\n".join(wrong)
