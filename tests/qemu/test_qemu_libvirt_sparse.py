"""A libvirt sparse save image (format 6) holding a real QEMU 10 mapped-ram stream
written at offset 92 + data_len (tests/support/libvirt_sparse.py says how it is made):
`extract` equals the RAM a QEMU 10 destination loads from the same file with
`migrate-incoming file:PATH,offset=N` (pmemsave), and `info` shows the libvirt header."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.libvirt_sparse import libvirt_part
from support.libvirt_sparse import write_libvirt_part
from support.qemu import X86_EXCLUDE
from support.qemu import MiB
from support.qemu import Vm
from support.qemu import build_guest
from support.qemu import differing_pages
from support.qemu import guest_args
from support.qemu import qemu10_root
from support.qemu import qemu10_wrapper
from support.qemu import require_qemu

QEMU10 = qemu10_root()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "migstream", *map(str, args)], capture_output=True, text=True)


def test_sparse_save_image_extracts_like_qemu_loads_it(tmp_path):
    require_qemu()
    if not (QEMU10 / "usr" / "bin" / "qemu-system-x86_64").exists():
        pytest.fail(f"QEMU 10 not found under {QEMU10}: run tests/setup-debian.sh or samples/get_qemu10.sh")
    qemu = qemu10_wrapper(QEMU10, tmp_path)
    img = build_guest(tmp_path)
    image = tmp_path / "sparse.img"
    with Vm(qemu, guest_args(img), tmp_path, "src") as vm:
        vm.wait_serial("migstream guest tick", timeout=60)
        vm.cmd("stop")
        name = next(m["name"] for m in vm.cmd("query-machines") if m.get("alias") == "pc")
        part = libvirt_part(name)
        vm.caps("mapped-ram")
        vm.cmd("migrate", uri=f"file:{image},offset={len(part)}")
        vm.wait_migration()
    write_libvirt_part(image, part)

    with Vm(qemu, guest_args(img) + ["-incoming", "defer"], tmp_path, "dst") as dst:
        dst.load_stream(None, caps=("mapped-ram",), uri=f"file:{image},offset={len(part)}")
        truth = dst.pmemsave(0, 64 * MiB, tmp_path / "dst.ram")

    r = cli("info", "--json", image)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    lv = doc["libvirt"]
    assert lv["format"] == "sparse" and lv["stream_offset"] == len(part) and lv["offsets"] == "file"
    assert lv["domain"]["name"] == "migstream-lvd" and doc["machine"] == name
    assert "mapped-ram" in doc["capabilities"] and doc["ram_complete"] and not doc["warnings"]
    r = cli("extract", "-o", tmp_path / "x", image)
    assert r.returncode == 0, r.stderr
    ram = (tmp_path / "x" / "pc.ram.bin").read_bytes()
    assert differing_pages(truth, ram, X86_EXCLUDE) == []
