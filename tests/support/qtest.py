"""QEMU's qtest protocol from tests: write guest-physical memory of a paused VM
(``-S -qtest unix:PATH,server=on,wait=off``) without any guest code."""

from __future__ import annotations

import base64
import socket
import time


class QTest:
    def __init__(self, path: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rwb")

    def write(self, gpa: int, data: bytes) -> None:
        self.f.write(f"b64write {gpa:#x} {len(data)} {base64.b64encode(data).decode()}\n".encode())
        self.f.flush()
        reply = self.f.readline()
        if not reply.startswith(b"OK"):
            raise RuntimeError(f"qtest b64write at {gpa:#x}: {reply!r}")

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def qtest_args(path: str) -> list[str]:
    return ["-S", "-qtest", f"unix:{path},server=on,wait=off", "-qtest-log", "/dev/null"]
