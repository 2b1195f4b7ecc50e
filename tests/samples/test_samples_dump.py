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
from support.samples import first_difference
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
            first = first_difference(got, want, truth["exclude"])
            if first is not None:
                pytest.fail(f"{name}: GPA 0x{truth['gpa'] + first:x} differs from pmemsave")


def test_qemu11_q35_dump_matches_qemu11_dump_guest_memory(tmp_path):
    """QEMU 11.1 (captured once by samples/make_dump_sample.py): a paused q35 guest
    with 3 GiB (2 GiB low, 1 GiB at 4 GiB) and known pages; our ELF has QEMU 11.1's
    RAM ranges and every non-zero page of its dump-guest-memory, outside the x86
    VGA/ROM window."""
    import hashlib
    import json

    from migstream.image.physwriter import data_extents

    truth = json.loads((SAMPLES / "q11-dump-q35.truth.json").read_text())
    lo_x, hi_x = truth["exclude"]
    out = tmp_path / "core.elf"
    assert dump(str(SAMPLES / "q11-dump-q35.mig.zst"), str(out), "elf").error is None
    pages = {int(g, 16): h for g, h in truth["pages_sha256"].items() if not lo_x <= int(g, 16) < hi_x}

    def cut(ranges):
        out = []
        for g, n in sorted(ranges):
            for lo, hi in ((g, min(g + n, lo_x)), (max(g, hi_x), g + n)):
                if lo < hi:
                    out.append((lo, hi))
        merged: list = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    with PhysicalImage(str(out)) as img:
        assert cut([(r.gpa, r.memsz) for r in img.ranges]) == cut(truth["ranges"])
        for gpa, sha in pages.items():
            assert hashlib.sha256(img.read(gpa, 4096)).hexdigest() == sha, f"GPA 0x{gpa:x}"
        for r in img.ranges:  # no data QEMU does not have
            for lo, hi in data_extents(img.fd, r.file_offset, r.file_offset + r.filesz):
                for gpa in range(r.gpa + lo - r.file_offset, r.gpa + hi - r.file_offset, 4096):
                    if not lo_x <= gpa < hi_x and gpa not in pages:
                        assert not any(img.read(gpa, 4096)), f"GPA 0x{gpa:x}"
        assert len(pages) >= len(truth["known"])
