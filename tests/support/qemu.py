"""The one harness for running real QEMU (TCG): tests, samples and benchmarks use it.

It knows how a VM is started (own QMP socket, serial and stderr files under a work
directory), how QMP comes up, how a migration is waited for, how guest memory is read
back (pmemsave), and the x86 facts every user needs: the test guest and the
guest-physical window where pmemsave does not read ``pc.ram``.  Every VM is killed on
close(); use them as context managers so no QEMU outlives a failing test.

Scripts outside tests/ put tests/ on sys.path and ``from support.qemu import ...``;
pytest and qemu.qmp are imported only when needed, so importing this is cheap.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUEST_ASM = ROOT / "samples" / "guest" / "guest.asm"
QEMU_X86 = "qemu-system-x86_64"
MiB = 1 << 20
PAGE = 4096

# Guest-physical 0xA0000-0xFFFFF on x86 reads through VGA MMIO / the BIOS ROM alias,
# so pmemsave there does not show pc.ram: compare (and store truth) outside it.
X86_EXCLUDE = ((0xA0000, 0x100000),)


def missing_tools(*binaries: str) -> list[str]:
    """What of ``binaries`` (and the qemu.qmp package) is not installed."""
    missing = [b for b in binaries if shutil.which(b) is None]
    try:
        import qemu.qmp  # noqa: F401  (only asking whether it is installed)
    except ImportError:
        missing.append("the qemu.qmp package (pip install -e '.[test]')")
    return missing


def require_qemu(*binaries: str) -> None:
    """Skip the calling test unless ``binaries`` (default: x86 QEMU and nasm) are here."""
    import pytest

    missing = missing_tools(*(binaries or (QEMU_X86, "nasm")))
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")


def need(binary: str) -> str:
    """The path of ``binary``; skips the calling test when QEMU is not here."""
    require_qemu(binary)
    return shutil.which(binary) or binary


def build_guest(directory: str | Path) -> Path:
    """Assemble the x86 test guest (samples/guest/guest.asm) into a boot disk image."""
    img = Path(directory) / "guest.img"
    subprocess.run(["nasm", "-f", "bin", "-o", str(img), str(GUEST_ASM)], check=True)
    with open(img, "r+b") as f:
        f.truncate(MiB)  # SeaBIOS on q35 does not boot a 512-byte image
    return img


def guest_args(guest_img: str | Path, ram_mib: int = 64, machine: str = "pc") -> list[str]:
    """QEMU options for an x86 VM booting the test guest (its disk changes are discarded)."""
    return ["-M", machine, "-m", f"{ram_mib}M", "-drive", f"file={guest_img},format=raw,if=ide,snapshot=on"]


def image_ram_args(image: str | Path, size: int, *, share: bool = False) -> list[str]:
    """x86 options that back pc.ram with ``image`` (``size`` bytes): RAM preloaded
    without guest code; share=off keeps the image unchanged."""
    return [
        "-machine",
        "memory-backend=pc.ram",
        "-object",
        f"memory-backend-file,id=pc.ram,size={size},mem-path={image},share={'on' if share else 'off'}",
    ]


def qemu10_root() -> Path:
    """Where samples/get_qemu10.sh unpacked QEMU 10 ($MIGSTREAM_QEMU10 or $QEMU10_ROOT)."""
    return Path(os.environ.get("MIGSTREAM_QEMU10") or os.environ.get("QEMU10_ROOT") or "/var/tmp/qemu10")


def qemu10_wrapper(root: str | Path, directory: str | Path) -> str:
    """A shell script in ``directory`` that starts QEMU 10 unpacked at ``root`` like any
    binary: its modules and firmware come from that root, not from the installed 7.2."""
    path = Path(directory) / "qemu10-system-x86_64"
    path.write_text(
        "#!/bin/sh\n"
        f"QEMU_MODULE_DIR={root}/usr/lib/x86_64-linux-gnu/qemu "
        f"exec {root}/usr/bin/qemu-system-x86_64 -L {root}/usr/share/qemu "
        '-L /usr/share/seabios "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def connect_qmp(sock: str, proc: subprocess.Popen, errlog: str | Path, timeout: float = 20):
    """The QMP start-up loop: wait for QEMU's socket and connect (qemu.qmp legacy API)."""
    from qemu.qmp.legacy import QEMUMonitorProtocol
    from qemu.qmp.protocol import ConnectError

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"QEMU exited: {read_text(errlog)}")
        if os.path.exists(sock):
            try:
                qmp = QEMUMonitorProtocol(sock)
                qmp.connect()
                return qmp
            except (OSError, ConnectError):
                pass  # the socket file exists before QEMU listens on it: try again
        if time.monotonic() > deadline:
            raise RuntimeError(f"QMP socket {sock} did not come up")
        time.sleep(0.05)


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class Vm:
    """A QEMU process under TCG with its QMP socket, serial and stderr files in ``workdir``."""

    def __init__(self, binary: str, args: list[str], workdir: str | Path, tag: str, *, timeout: float = 20) -> None:
        self.tag = tag
        self.sock = os.path.join(str(workdir), f"{tag}.qmp")
        self.serial = Path(workdir) / f"{tag}.serial"
        self.errlog = Path(workdir) / f"{tag}.stderr"
        self.cmdline = [
            binary,
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-serial",
            f"file:{self.serial}",
            "-qmp",
            f"unix:{self.sock},server=on,wait=off",
            *args,
        ]
        with open(self.errlog, "wb") as err:
            self.proc = subprocess.Popen(self.cmdline, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.qmp = None
        try:
            self.qmp = connect_qmp(self.sock, self.proc, self.errlog, timeout)
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        return read_text(self.errlog)

    def serial_text(self) -> str:
        try:
            return self.serial.read_bytes().decode("latin-1")
        except FileNotFoundError:
            return ""

    def cmd(self, name: str, /, **args):
        assert self.qmp is not None, "QMP is closed"
        r = self.qmp.cmd_raw(name, args or None)
        if "error" in r:
            raise RuntimeError(f"QMP {name} {args}: {r['error']}")
        return r.get("return")

    def hmp(self, line: str) -> str:
        return self.cmd("human-monitor-command", **{"command-line": line})

    def status(self) -> str:
        return self.cmd("query-status")["status"]

    def version(self) -> str:
        """QEMU's version as samples.json states it: "7.2.22 (Debian ...)"."""
        ver = self.cmd("query-version")
        qv = ver["qemu"]
        package = f" ({ver['package'].strip()})" if ver.get("package") else ""
        return f"{qv['major']}.{qv['minor']}.{qv['micro']}{package}"

    def caps(self, *names: str, state: bool = True) -> None:
        if names:
            self.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": state} for c in names])

    def wait_serial(self, needle: str, timeout: float = 30, after: int = 0) -> int:
        """Position just after the first ``needle`` at or after ``after`` in the serial log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            i = self.serial_text().find(needle, after)
            if i >= 0:
                return i + len(needle)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.tag}: QEMU exited: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.tag}: {needle!r} not on the serial port within {timeout} s")

    def resume(self, needle: str = "migstream guest tick", timeout: float = 30) -> str:
        """``cont``, then wait up to ``timeout`` s for ``needle`` on the serial port
        (the test guest prints ticks while it runs); returns the serial text."""
        self.cmd("cont")
        deadline = time.monotonic() + timeout
        while needle not in self.serial_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.serial_text()

    def pmemsave(self, addr: int, size: int, path: str | Path) -> bytes:
        """Guest-physical memory [addr, addr+size) as QEMU reads it, via a file."""
        path = Path(path)
        self.cmd("pmemsave", val=addr, size=size, filename=str(path))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size == size:
                return path.read_bytes()
            time.sleep(0.05)
        raise AssertionError(f"{self.tag}: pmemsave did not write {size} bytes")

    def load_stream(self, stream, *, caps=(), uri: str | None = None, timeout: float = 60) -> None:
        """migrate-incoming from a file (``exec:cat FILE``, or ``uri`` such as
        ``file:FILE``); returns when the load finished, raises with QEMU's stderr
        when it failed."""
        self.caps(*caps)
        self.cmd("migrate-incoming", uri=uri or f"exec:cat {stream}")
        t0 = time.monotonic()
        while True:
            try:
                mig = self.cmd("query-migrate").get("status")
                status = self.status()
            except Exception as err:
                # A failed load makes QEMU exit (QEMU 10: exit-on-error): say why.
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    raise err from None
                raise AssertionError(f"destination QEMU exited while loading: {self.stderr().strip()}") from err
            if mig == "failed":
                raise AssertionError(f"incoming migration failed: {self.stderr().strip()}")
            if mig == "completed" and status != "inmigrate":
                return
            if time.monotonic() - t0 > timeout:
                raise AssertionError("incoming migration did not finish")
            time.sleep(0.05)

    def migrate_to_file(self, path, *, timeout: float = 60, poll: float = 0.05) -> dict:
        """Migrate at full speed (7.2 rejects more than 1 TiB/s) into ``path``
        (exec:cat) and wait for completed."""
        self.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        self.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(path))}")
        return self.wait_migration(timeout, poll=poll)

    def wait_migration(
        self,
        timeout: float = 60,
        postcopy_after: float | None = None,
        min_syncs: int | None = None,
        poll: float = 0.05,
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
                raise AssertionError(f"{self.tag}: migration {status}: {st.get('error-desc', st)} {self.stderr()}")
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
            time.sleep(poll)

    def close(self) -> None:
        if self.qmp is not None:
            try:
                self.qmp.cmd_raw("quit")
            except Exception:
                pass  # QEMU may be gone already; it is waited for (or killed) below
            try:
                self.qmp.close()
            except Exception:
                pass
            self.qmp = None
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def in_ranges(offset: int, ranges) -> bool:
    return any(lo <= offset < hi for lo, hi in ranges)


def differing_pages(a: bytes, b: bytes, exclude=(), page: int = PAGE) -> list[int]:
    """Page offsets where two memory images differ, outside the ``exclude`` ranges."""
    assert len(a) == len(b), (len(a), len(b))
    return [
        off
        for off in range(0, len(a), page)
        if not in_ranges(off, exclude) and a[off : off + page] != b[off : off + page]
    ]
