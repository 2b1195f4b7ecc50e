"""Small helpers for tests that run real QEMU (x86, TCG): start VMs, QMP, serial.

Every VM is killed on close(), and tests use them as context managers, so no QEMU
outlives a failing test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.qemu import Vm as BaseVm

ROOT = Path(__file__).resolve().parents[2]
GUEST_ASM = ROOT / "samples" / "guest" / "guest.asm"
QEMU = "qemu-system-x86_64"
MiB = 1 << 20
X86_EXCLUDE = (0xA0000, 0x100000)  # VGA window / BIOS alias: pmemsave does not read pc.ram there


def require_qemu() -> None:
    missing = [b for b in (QEMU, "nasm") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")
    try:
        import qemu.qmp  # noqa: F401
    except ImportError:
        pytest.skip("the qemu.qmp package is missing (pip install -e '.[test]')")


def build_guest(directory: Path) -> Path:
    img = directory / "guest.img"
    subprocess.run(["nasm", "-f", "bin", "-o", str(img), str(GUEST_ASM)], check=True)
    with open(img, "r+b") as f:
        f.truncate(MiB)  # SeaBIOS wants more than one sector
    return img


class Vm(BaseVm):
    """tests/qemuvm.py's Vm for the x86 capture tests: (workdir, tag, args), Path
    attributes, and the waits those tests use."""

    def __init__(self, workdir: Path, tag: str, args: list[str]) -> None:
        self.tag = tag
        super().__init__(QEMU, args, workdir, tag)
        self.qmp_path = self.sock
        self.serial = Path(self.serial)
        self.errlog = Path(self.errlog)

    def caps(self, *names: str) -> None:
        if names:
            self.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in names])

    def wait_serial(self, needle: str, timeout: float = 30, after: int = 0) -> int:
        """Position just after the first `needle` at or after `after` in the serial log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.serial_text()
            i = text.find(needle, after)
            if i >= 0:
                return i + len(needle)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.tag}: QEMU exited: {self.errlog.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.tag}: {needle!r} not on the serial port within {timeout} s")

    def status(self) -> str:
        return self.cmd("query-status")["status"]

    def wait_migration(
        self, timeout: float = 60, postcopy_after: float | None = None, min_syncs: int | None = None
    ) -> dict:
        """Poll query-migrate until completed (failed raises).  ``min_syncs``: the
        caller started with a downtime limit the migration cannot meet; once this many
        dirty-bitmap syncs (iterations) happened, the limit is raised so that it ends.
        That makes the number of iterations independent of the machine's load."""
        t0 = time.monotonic()
        started_postcopy = False
        while True:
            st = self.cmd("query-migrate")
            status = st.get("status")
            if status == "completed":
                return st
            if min_syncs is not None and st.get("ram", {}).get("dirty-sync-count", 0) >= min_syncs:
                self.cmd("migrate-set-parameters", **{"downtime-limit": 2000})
                min_syncs = None
            if status in ("failed", "cancelled"):
                raise AssertionError(f"{self.tag}: migration {status}: {st.get('error-desc', st)}")
            if (
                postcopy_after is not None
                and not started_postcopy
                and status == "active"
                and time.monotonic() - t0 >= postcopy_after
            ):
                self.cmd("migrate-start-postcopy")
                started_postcopy = True
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{self.tag}: migration not completed in {timeout} s: {st}")
            time.sleep(0.05)

    def pmemsave(self, path: Path, base: int, size: int) -> bytes:
        self.cmd("pmemsave", val=base, size=size, filename=str(path))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size == size:
                return path.read_bytes()
            time.sleep(0.05)
        raise AssertionError(f"{self.tag}: pmemsave did not write {size} bytes")


def guest_args(guest_img: Path, ram_mib: int = 64) -> list[str]:
    return ["-M", "pc", "-m", f"{ram_mib}M", "-drive", f"file={guest_img},format=raw,if=ide,snapshot=on"]


def differing_pages(decoded: bytes, truth: bytes, page: int = 4096, exclude=X86_EXCLUDE) -> list[int]:
    """Page offsets where two RAM images differ, outside the x86 VGA/BIOS window."""
    assert len(decoded) == len(truth), (len(decoded), len(truth))
    lo, hi = exclude
    return [
        off
        for off in range(0, len(truth), page)
        if not lo <= off < hi and decoded[off : off + page] != truth[off : off + page]
    ]
