#!/usr/bin/env python3
"""Capture the QEMU 11.1 case of `migstream dump` once: a paused q35 guest with 3 GiB
of RAM (2 GiB below the PCI hole, 1 GiB at 4 GiB) and known pages written through
qtest, migrated to a stream (samples/q11-dump-q35.mig.zst) with its truth from QEMU
11.1's own dump-guest-memory (paging off), read through a FIFO: the PT_LOAD ranges
and the SHA-256 of every non-zero page by GPA (samples/q11-dump-q35.truth.json).
tests/samples/test_samples_dump.py checks `dump` against it.  QEMU 11.1 is not
available to CI, hence the bundle.  Rerun (needs /work/qemu11/bin wrappers, see
../docs/testing.md):

    .venv/bin/python samples/make_dump_sample.py [--qemu /work/qemu11/bin/qemu-system-x86_64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.qemu.test_qemu_dump import _page  # noqa: E402
from tests.qemu.test_qemu_dump import _qemu_dump  # noqa: E402
from tests.support.qemu import Vm  # noqa: E402
from tests.support.qtest import QTest  # noqa: E402
from tests.support.qtest import qtest_args  # noqa: E402

GiB = 1 << 30
KNOWN = [0x2000, 0x7FFFF000, 0x100000000, 0x13FFFF000]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qemu", default="/work/qemu11/bin/qemu-system-x86_64")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        t = Path(tmp)
        qt = str(t / "qtest.sock")
        vm_args = [
            "-M",
            "q35,memory-backend=pc.ram",
            "-m",
            "3G",
            "-object",
            f"memory-backend-ram,id=pc.ram,size={3 * GiB}",
        ]
        with Vm(args.qemu, [*vm_args, *qtest_args(qt)], t, "src", timeout=60) as vm:
            version = vm.version()
            q = QTest(qt)
            for gpa in KNOWN:
                q.write(gpa, _page(gpa))
            q.close()
            vm.migrate_to_file(t / "s.mig", timeout=300)
            ranges, pages = _qemu_dump(vm, t / "dump.fifo")
        subprocess.run(
            ["zstd", "-q", "-19", "-f", str(t / "s.mig"), "-o", str(ROOT / "samples" / "q11-dump-q35.mig.zst")],
            check=True,
        )
    truth = {
        "qemu_version": version,
        "qemu_cmdline": vm_args,
        "known": KNOWN,
        "ranges": ranges,
        "exclude": [0xA0000, 0x100000],
        "pages_sha256": {f"0x{g:x}": hashlib.sha256(p).hexdigest() for g, p in sorted(pages.items())},
    }
    (ROOT / "samples" / "q11-dump-q35.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"QEMU {version}: {len(ranges)} PT_LOADs, {len(pages)} non-zero pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
