"""``dump`` of every bundled real QEMU capture (7.2 and 10: XBZRLE, compression,
postcopy, multifd, mapped-ram, x-ignore-shared, block migration, libvirt images,
q35, aarch64, ppc64, s390x) holds the truth (QEMU's pmemsave, samples.json) at the
guest-physical address pmemsave read it from."""

from __future__ import annotations

import pytest

from migstream.containers.physimage import PhysicalImage
from migstream.tools.dump import dump
from support.samples import SAMPLES
from support.samples import channel_files
from support.samples import load_samples
from support.samples import read_zst
from support.samples import sample_ids


@pytest.mark.parametrize("name", sample_ids())
def test_dump_holds_the_truth_at_its_gpa(name, tmp_path):
    sample = next(s for s in load_samples() if s["name"] == name)
    out = tmp_path / "core.elf"
    result = dump(str(SAMPLES / sample["stream"]), str(out), "elf", channels=channel_files(sample))
    assert result.error is None
    with PhysicalImage(str(out)) as img:
        for truth in sample["truth"]:
            want = read_zst(SAMPLES / truth["file"])
            got = img.read(truth["gpa"], truth["length"])
            start = 0
            for lo, hi in sorted(truth["exclude"]) + [(len(want), len(want))]:
                if got[start:lo] != want[start:lo]:
                    first = next(i for i in range(start, lo) if got[i] != want[i])
                    pytest.fail(f"{name}: GPA 0x{truth['gpa'] + first:x} differs from pmemsave")
                start = max(start, hi)
