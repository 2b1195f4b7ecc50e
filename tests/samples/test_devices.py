"""`migstream devices`: device state from the VMDESCRIPTION.

Truth: QEMU's own analyze-migration.py output, committed under
tests/data/analyze-migration/ (see its README for the command line), on every sample
where that script works; on the others (where it fails) we must succeed and the
values must be what the guest set up (CPU registers of a known guest)."""

import json
import struct
import subprocess
import sys

import pytest

from migstream.decode.vmstate import VmstateError
from migstream.decode.vmstate import decode_s390_storage_attributes
from migstream.decode.vmstate import decode_spapr_htab
from migstream.decode.vmstate import decode_vmstate
from migstream.tools.devices import device_states
from migstream.wire.grammar import SectionType
from support.samples import ROOT
from support.samples import read_zst
from support.samples import sample_by_name

TRUTH = ROOT / "tests" / "data" / "analyze-migration"
COMPARED = ["x86-fresh-S", "x86-stopped", "x86-running", "x86-q35", "libvirt-raw"]


@pytest.fixture(scope="module")
def states(raw_sample_dir):
    cache = {}

    def get(name):
        if name not in cache:
            sample = sample_by_name(name)
            path = raw_sample_dir / (name + ".mig")
            if sample.get("kind") == "libvirt-save":
                path = path.with_suffix(".img")
                path.write_bytes(read_zst(ROOT / "samples" / sample["stream"]))
            cache[name] = device_states(str(path))
        return cache[name]

    return get


def _same(ours, theirs, where, counter):
    """analyze-migration.py prints ints as '0x..' (two's complement hex, then
    ' (signed)' when negative), bools as bools, other fields as spaced hex bytes."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for k in theirs:
            _same(ours[k], theirs[k], f"{where}.{k}", counter)
        return
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same(a, b, f"{where}[{i}]", counter)
        return
    counter[0] += 1
    if isinstance(theirs, bool):
        assert ours is theirs, where
    elif theirs.startswith("0x"):
        digits = theirs.split()[0][2:]
        assert isinstance(ours, int) and not isinstance(ours, bool), f"{where}: {ours!r} vs {theirs}"
        assert ours & ((1 << (4 * len(digits))) - 1) == int(digits, 16), f"{where}: {ours} vs {theirs}"
        if "(" in theirs:
            assert ours == int(theirs.split("(")[1].rstrip(")")), where
    else:
        # 7.2's script has no nullptr reader: it shows the marker byte '0' as "30".
        mine = "30" if ours is None else ours
        assert mine == theirs.replace(" ", ""), f"{where}: {ours!r} vs {theirs!r}"


@pytest.mark.parametrize("name", COMPARED)
def test_field_values_equal_analyze_migration(name, states):
    theirs = json.loads(read_zst(TRUTH / f"{name}.state.json.zst"))
    doc = states(name)
    assert doc["error"] is None and doc["has_description"]
    by_key = {f"{s['idstr']} ({s['section_id']})": s for s in doc["sections"] if s["type"] == "FULL"}
    counter = [0]
    compared_sections = 0
    for key, value in theirs.items():
        if key.startswith("ram ("):
            continue
        assert key in by_key, f"{key} missing from our output"
        sec = by_key[key]
        assert "error" not in sec, sec.get("error")
        _same(sec["state"], value, key, counter)
        compared_sections += 1
    # every described FULL section of ours is in the script's output too
    assert compared_sections == len(by_key)
    assert compared_sections >= 25 and counter[0] >= 500, (compared_sections, counter[0])
    print(f"{name}: {compared_sections} sections, {counter[0]} values equal")


def test_x86_cpu_registers_of_the_running_guest(states):
    """The test guest runs in 32-bit protected mode with flat segments from its
    boot sector at 0x7c00 (samples/guest/guest.asm)."""
    for name in ("x86-stopped", "x86-xbzrle", "x86-compress"):
        cpu = next(s for s in states(name)["sections"] if s["idstr"] == "cpu")["state"]
        assert 0x7C00 <= cpu["env.eip"] < 0x9000, hex(cpu["env.eip"])
        assert cpu["env.cr[0]"] & 1 == 1  # CR0.PE
        cs = cpu["env.segs"][1]
        assert (cs["base"], cs["limit"]) == (0, 0xFFFFFFFF)


def test_where_analyze_migration_fails_aarch64(states):
    doc = states("aarch64-virt")
    assert doc["configuration"]["target_page_bits"] == 12  # the subsection the script chokes on
    assert not [s for s in doc["sections"] if s.get("error")]
    cpu = next(s for s in doc["sections"] if s["idstr"] == "cpu")["state"]
    assert cpu["cpreg_vmstate_array_len"] == len(cpu["cpreg_vmstate_indexes"]) == len(cpu["cpreg_vmstate_values"])
    assert cpu["cpreg_vmstate_array_len"] > 100


def test_where_analyze_migration_fails_ppc64(states):
    doc = states("ppc64-pseries")
    secs = doc["sections"]
    assert not [s for s in secs if s.get("error")]
    high = [s for s in secs if s["instance_id"] & 0x80000000]
    assert high and all(s["state"] is not None for s in high)
    for s in high:  # spapr_iommu: the liobn is the instance id
        if s["idstr"] == "spapr_iommu":
            assert s["state"]["liobn"] == s["instance_id"]
    cpu = next(s for s in secs if s["idstr"] == "cpu")["state"]
    assert cpu["env.nip"] == 0x100  # SLOF's entry, where pseries starts its CPU
    htab = [s for s in secs if s["idstr"] == "spapr/htab"]
    assert [s["type"] for s in htab] == ["START", "PART", "END"]
    assert htab[0]["state"] == {"htab_shift": 21}  # 2 MiB hash table for 256 MiB of RAM
    assert all(s["state"]["hpt"] for s in htab[1:])


def test_where_analyze_migration_fails_s390x(states):
    doc = states("s390x-ccw")
    secs = doc["sections"]
    assert not [s for s in secs if s.get("error")]
    attrs = [s for s in secs if s["idstr"] == "s390-storage_attributes"]
    assert [s["type"] for s in attrs] == ["START", "PART", "END"] and all(s["iterative"] for s in attrs)
    # TCG has no CMMA: no attribute runs, and the END carries the final DONE marker.
    assert [a["state"]["done"] for a in attrs] == [False, False, True]
    assert all(a["state"]["runs"] == 0 for a in attrs)
    cpu = next(s for s in secs if s["idstr"] == "cpu")["state"]
    # The s390-ccw firmware is loaded at 0x3e00000 (samples/README.md): the PSW points into it.
    assert 0x3E00000 <= cpu["env.psw.addr"] < 0x4000000
    css = next(s for s in secs if s["idstr"] == "s390_css")["state"]
    # 7.2 describes the css pointer array by its first (NULL) element only: the rest is kept.
    assert css["css"][:254] == [None] * 254
    assert css["__undescribed__"]["bytes"]


def test_no_description_frames_sections(states):
    doc = states("x86-postcopy")
    assert doc["has_description"] is False and doc["error"] is None
    assert len(doc["sections"]) > 20
    assert all(s["state"] is None and s["note"] for s in doc["sections"])


def test_cli_json_and_text(raw_sample_dir):
    path = raw_sample_dir / "x86-stopped.mig"
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "devices", "--json", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert any(s["idstr"] == "cpu" for s in doc["sections"])
    text = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "devices", str(path)], capture_output=True, text=True
    ).stdout
    assert "env.eip = 0x" in text and "configuration  machine pc-i440fx-7.2" in text


def test_compressed_input_uses_trailing_description(tmp_path):
    """From a pipe the description comes after EOF: payloads are kept and decoded then."""
    sample = sample_by_name("x86-stopped")
    with open(ROOT / "samples" / sample["stream"], "rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "migstream.cli", "devices", "--json", "-"], stdin=f, capture_output=True, text=True
        )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["has_description"]
    assert next(s for s in doc["sections"] if s["idstr"] == "cpu")["state"]["env.eip"] >= 0x7C00


# --- the decoder itself on hand-made payloads (rules from vmstate.c) ---------------------

DESC = {
    "vmsd_name": "dev",
    "version": 1,
    "fields": [
        {"name": "a", "type": "int16", "size": 2},
        {"name": "b", "type": "uint32", "size": 4, "array_len": 2},
        {"name": "p", "type": "nullptr", "size": 1},
        {
            "name": "s",
            "type": "struct",
            "size": 1,
            "struct": {"vmsd_name": "in", "version": 1, "fields": [{"name": "x", "type": "bool", "size": 1}]},
        },
        {"name": "buf", "type": "buffer", "size": 3},
        {"name": "e", "index": 0, "type": "uint8", "size": 1},
        {"name": "e", "index": 1, "type": "uint8", "size": 1},
    ],
    "subsections": [{"vmsd_name": "dev/sub", "version": 2, "fields": [{"name": "y", "type": "int64", "size": 8}]}],
}


def _payload():
    sub = b"\x05" + bytes([7]) + b"dev/sub" + struct.pack(">I", 2) + struct.pack(">q", -5)
    return struct.pack(">hII", -2, 1, 0xFFFFFFFF) + b"0" + b"\x01" + b"abc" + b"\x07\x08" + sub


def test_decode_vmstate_rules():
    state = decode_vmstate(_payload(), DESC)
    assert state == {
        "a": -2,
        "b": [1, 0xFFFFFFFF],
        "p": None,
        "s": {"x": True},
        "buf": "616263",
        "e": [7, 8],
        "dev/sub": {"y": -5},
    }


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p[:-3], "payload ends inside"),
        (lambda p: p + b"\x00", "left after"),
        (lambda p: p[:10] + b"1" + p[11:], "nullptr"),
        (lambda p: p[:17] + b"\x06" + p[18:], "subsection dev/sub expected"),
    ],
)
def test_decode_vmstate_errors(mutate, message):
    with pytest.raises(VmstateError, match=message) as exc:
        decode_vmstate(mutate(_payload()), DESC, offset=0x1000, device="dev")
    assert "offset 0x1" in str(exc.value)


def test_hostile_description_does_not_allocate():
    desc = {"fields": [{"name": "a", "type": "uint8", "size": 1, "array_len": 1 << 40}]}
    with pytest.raises(VmstateError, match="unusable description"):
        decode_vmstate(b"\x00", desc)


def test_spapr_htab_chunks():
    pte = bytes(16)
    part = struct.pack(">i", 0) + struct.pack(">IHH", 5, 2, 1) + pte * 2 + bytes(8)
    assert decode_spapr_htab(part, SectionType.PART) == {"hpt": True, "chunks": 1, "valid_hptes": 2, "invalid_hptes": 1}
    assert decode_spapr_htab(struct.pack(">i", -1), SectionType.END) == {"hpt": False}
    with pytest.raises(VmstateError):
        decode_spapr_htab(part[:-4], SectionType.PART)


def test_s390_storage_attribute_runs():
    more = struct.pack(">QQ", (0x100 << 12) | 2, 3) + b"\x01\x02\x03"
    data = more + struct.pack(">Q", 8) + struct.pack(">Q", 1)
    assert decode_s390_storage_attributes(data) == {"runs": 1, "pages": 3, "done": True, "first_gfn": 0x100}
    with pytest.raises(VmstateError, match="without EOS"):
        decode_s390_storage_attributes(more)
    with pytest.raises(VmstateError, match="runs past"):
        decode_s390_storage_attributes(struct.pack(">QQ", 2, 1 << 60))
    with pytest.raises(VmstateError, match="incomplete"):
        decode_s390_storage_attributes(struct.pack(">Q", 4))


def test_configuration_entry_of_newer_qemu(states):
    """QEMU 8.2+ describes the configuration section in the JSON: decoded like a device,
    it must say what the grammar read from the same bytes."""
    cfg = states("x86-qemu10-ignore-shared")["configuration"]
    assert cfg["machine"] == "pc-i440fx-10.0"
    state = cfg["state"]
    assert state["len"] == len(cfg["machine"])
    assert bytes.fromhex(state["name"]).decode() == cfg["machine"]
    caps = state["configuration/capabilities"]
    assert caps["caps_count"] == 1 and caps["capabilities"] == "x-ignore-shared" == cfg["capabilities"][0]
    # 7.2 has no such entry
    assert "state" not in states("x86-ignore-shared")["configuration"]


def test_qemu10_devices_decode(states):
    doc = states("x86-qemu10-ignore-shared")
    assert doc["error"] is None and not [s for s in doc["sections"] if s.get("error")]
    assert all(s["state"] is not None for s in doc["sections"])
    cpu = next(s for s in doc["sections"] if s["idstr"] == "cpu")["state"]
    assert 0x7C00 <= cpu["env.eip"] < 0x9000 and cpu["env.cr[0]"] & 1


def test_misshapen_description_is_an_error_not_a_crash():
    for desc in ({"fields": "abc"}, {"fields": [{"name": "a", "size": "x"}]}, {"subsections": [7]}):
        with pytest.raises(VmstateError, match="unusable description"):
            decode_vmstate(b"\x00" * 8, desc)


def test_damaged_subsection_marker_in_a_real_stream(raw_sample_dir, tmp_path):
    """A subsection marker of the CPU broken in a real capture: that section reports the
    exact offset, the others still decode, the command exits 1."""
    path = raw_sample_dir / "x86-stopped.mig"
    doc = device_states(str(path))
    cpu = next(s for s in doc["sections"] if s["idstr"] == "cpu")
    data = bytearray(path.read_bytes())
    first_sub = next(k for k in cpu["state"] if k.startswith("cpu/"))
    needle = b"\x05" + bytes([len(first_sub)]) + first_sub.encode()
    at = data.index(needle, cpu["offset"], cpu["offset"] + cpu["size"])
    data[at] = 0x06
    bad = tmp_path / "bad.mig"
    bad.write_bytes(bytes(data))
    doc = device_states(str(bad))
    broken = [s for s in doc["sections"] if s.get("error")]
    assert [s["idstr"] for s in broken] == ["cpu"]
    error = broken[0]["error"]  # an error object (docs/json.md): the line and where
    assert f"offset 0x{at:x}" in error["error"] and first_sub in error["error"]
    assert error["offset"] == at and error["section"] == "cpu"
    assert sum(1 for s in doc["sections"] if s.get("state")) == len(doc["sections"]) - 1
    proc = subprocess.run([sys.executable, "-m", "migstream.cli", "devices", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and f"offset 0x{at:x}" in proc.stderr and "Traceback" not in proc.stderr
