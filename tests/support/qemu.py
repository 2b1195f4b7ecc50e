"""Small QEMU driver for the real-QEMU tests (QMP through the qemu.qmp package).

Every VM gets its own socket and serial file under the test's tmp dir and is
killed on close(), also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

MiB = 1 << 20


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it)")
    return path


class Vm:
    def __init__(self, binary: str, args: list[str], workdir, tag: str) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.sock = os.path.join(str(workdir), f"{tag}.qmp")
        self.serial = os.path.join(str(workdir), f"{tag}.serial")
        self.errlog = os.path.join(str(workdir), f"{tag}.stderr")
        cmd = [
            need(binary),
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-serial",
            f"file:{self.serial}",
            "-qmp",
            f"unix:{self.sock},server=on,wait=off",
        ] + args
        self.cmdline = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.errlog, "wb")
        )
        self.qmp = None
        try:
            deadline = time.time() + 20
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"QEMU exited: {self.stderr()}")
                if os.path.exists(self.sock):
                    try:
                        q = QEMUMonitorProtocol(self.sock)
                        q.connect()
                        self.qmp = q
                        break
                    except OSError:
                        pass
                if time.time() > deadline:
                    raise RuntimeError("QMP socket did not come up")
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        try:
            return open(self.errlog, "rb").read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def cmd(self, name: str, **args):
        r = self.qmp.cmd_raw(name, args or None)
        if "error" in r:
            raise RuntimeError(f"QMP {name} {args}: {r['error']}")
        return r.get("return")

    def serial_text(self) -> str:
        try:
            return open(self.serial, "rb").read().decode("latin-1")
        except FileNotFoundError:
            return ""

    def pmemsave(self, addr: int, size: int, path) -> bytes:
        self.cmd("pmemsave", val=addr, size=size, filename=str(path))
        with open(path, "rb") as f:
            return f.read()

    def load_stream(self, stream, *, caps=(), timeout: float = 60) -> None:
        """migrate-incoming from a file; returns when the load finished, raises
        with QEMU's stderr when it failed."""
        if caps:
            self.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in caps])
        self.cmd("migrate-incoming", uri=f"exec:cat {stream}")
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"destination QEMU exited while loading: {self.stderr().strip()}")
            try:
                status = self.cmd("query-status")["status"]
            except Exception:
                if self.proc.poll() is not None:
                    raise AssertionError(f"destination QEMU exited while loading: {self.stderr().strip()}")
                raise
            mig = self.cmd("query-migrate").get("status")
            if mig == "failed":
                raise AssertionError(f"incoming migration failed: {self.stderr().strip()}")
            if mig == "completed" and status != "inmigrate":
                return
            if time.time() - t0 > timeout:
                raise AssertionError("incoming migration did not finish")
            time.sleep(0.05)

    def migrate_to_file(self, path, *, timeout: float = 60) -> dict:
        self.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        self.cmd("migrate", uri=f"exec:cat > {path}")
        t0 = time.time()
        while True:
            st = self.cmd("query-migrate")
            if st.get("status") == "completed":
                return st
            if st.get("status") in ("failed", "cancelled"):
                raise AssertionError(f"migration {st.get('status')}: {self.stderr()}")
            if time.time() - t0 > timeout:
                raise AssertionError(f"migration timeout: {st}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.qmp is not None:
            try:
                self.qmp.cmd_raw("quit")
            except Exception:
                pass
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


def differing_pages(a: bytes, b: bytes, exclude=(), page: int = 4096) -> list[int]:
    assert len(a) == len(b), (len(a), len(b))
    return [
        off
        for off in range(0, len(a), page)
        if not any(lo <= off < hi for lo, hi in exclude) and a[off : off + page] != b[off : off + page]
    ]
