#!/usr/bin/env python3
"""Packet captures of real QEMU 7.2 migrations between two QEMUs on 127.0.0.1.

For each variant: tcpdump records the migration port (``tcpdump -s 0 -w FILE 'tcp port
N'``), a source VM (the x86 test guest, 32 MiB) migrates over TCP into a destination
started with ``-S -incoming defer``, and the destination's RAM (pmemsave, guest-physical
0..32 MiB, which is pc.ram outside the VGA/ROM window X86_EXCLUDE) is the truth.

Variants (the capture link type in brackets):
  plain     stopped guest, no capability              [-i any: Linux cooked SLL2]
  multifd   stopped guest, multifd with 2 channels    [-i lo: Ethernet], also as pcapng
  multifd-ipv6  the same over ::1                     [-i lo: Ethernet, IPv6], as pcapng
  xbzrle    running guest, xbzrle, 32 MiB/s           [-i lo: Ethernet], as nanosecond pcap
  postcopy  running guest, postcopy-ram + preempt     [-i lo], switched to postcopy at once

Writes samples/pcap-<variant>.{pcap,pcapng}.zst, samples/pcap-<variant>.ram.zst and
samples/pcap.json.  Rerun: ``python3 samples/make_pcap_samples.py [VARIANT ...]`` as root
(tcpdump), with qemu-system-x86_64 (7.2), nasm, tcpdump, editcap and zstd installed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.qemu import X86_EXCLUDE  # noqa: E402
from support.qemu import Vm  # noqa: E402
from support.qemu import build_guest  # noqa: E402
from support.qemu import guest_args  # noqa: E402

MiB = 1 << 20
RAM = 32 * MiB
OUT = ROOT / "samples"
VARIANTS = {
    "plain": dict(caps=[], params={}, running=False, iface="any", forms=["pcap"]),
    "multifd": dict(
        caps=["multifd"], params={"multifd-channels": 2}, running=False, iface="lo", forms=["pcap", "pcapng"]
    ),
    "multifd-ipv6": dict(
        caps=["multifd"], params={"multifd-channels": 2}, running=False, iface="lo", forms=["pcapng"], host="::1"
    ),
    "xbzrle": dict(
        caps=["xbzrle"],
        params={"max-bandwidth": 32 * MiB, "downtime-limit": 30, "xbzrle-cache-size": 8 * MiB},
        running=True,
        iface="lo",
        forms=["nsec.pcap"],
    ),
    "postcopy": dict(
        caps=["postcopy-ram", "postcopy-preempt"],
        params={"max-bandwidth": 8 * MiB},
        running=True,
        iface="lo",
        forms=["pcap"],
        postcopy=True,
    ),
}


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_completed(vm: Vm, postcopy: bool, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        st = vm.cmd("query-migrate")
        if st.get("status") == "completed":
            return st
        if st.get("status") in ("failed", "cancelled"):
            raise RuntimeError(f"migration {st.get('status')}: {st.get('error-desc')}")
        if postcopy and not started and st.get("status") == "active":
            time.sleep(0.3)
            vm.cmd("migrate-start-postcopy")
            started = True
        time.sleep(0.05)
    raise RuntimeError("migration did not complete")


def capture(name: str, spec: dict, workdir: Path, guest: Path) -> dict:
    host = spec.get("host", "127.0.0.1")
    uri_host = f"[{host}]" if ":" in host else host
    port = free_port(host)
    raw = workdir / f"{name}.pcap"
    dump = subprocess.Popen(
        ["tcpdump", "-i", spec["iface"], "-s", "0", "-B", "262144", "-U", "-w", str(raw), f"tcp port {port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert dump.stderr is not None
    line = dump.stderr.readline().decode()  # "listening on ..." once it captures
    print(f"{name}: tcpdump {line.strip()}")
    dst = Vm("qemu-system-x86_64", [*guest_args(guest, RAM // MiB), "-S", "-incoming", "defer"], workdir, f"{name}-dst")
    src = Vm(
        "qemu-system-x86_64",
        [*guest_args(guest, RAM // MiB), *([] if spec["running"] else ["-S"])],
        workdir,
        f"{name}-src",
    )
    try:
        if spec["running"]:
            src.wait_serial("migstream guest tick")
        for vm in (src, dst):
            vm.caps(*spec["caps"])
            params = {k: v for k, v in spec["params"].items() if k.startswith("multifd")}
            if params:
                vm.cmd("migrate-set-parameters", **params)
        src.cmd(
            "migrate-set-parameters",
            **{k: v for k, v in spec["params"].items() if not k.startswith("multifd")} or {"max-bandwidth": 1 << 40},
        )
        dst.cmd("migrate-incoming", uri=f"tcp:{uri_host}:{port}")
        time.sleep(0.2)
        src.cmd("migrate", uri=f"tcp:{uri_host}:{port}")
        st = wait_completed(src, spec.get("postcopy", False))
        deadline = time.monotonic() + 30
        while dst.cmd("query-migrate").get("status") != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        truth = dst.pmemsave(0, RAM, workdir / f"{name}.ram")
        time.sleep(0.5)  # the FINs
    finally:
        src.close()
        dst.close()
        dump.terminate()
        dump.wait(10)
    ram = st.get("ram", {})
    entry = {
        "name": f"pcap-{name}",
        "qemu": "7.2",
        "capabilities": spec["caps"],
        "parameters": spec["params"],
        "interface": spec["iface"],
        "host": host,
        "port": port,
        "transferred": ram.get("transferred"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
        "ram": f"pcap-{name}.ram.zst",
        "ram_size": RAM,
        "exclude": [list(r) for r in X86_EXCLUDE],
        "captures": [],
    }
    (workdir / f"{name}.ram").write_bytes(truth)
    subprocess.run(["zstd", "-q", "-f", "-19", str(workdir / f"{name}.ram"), "-o", str(OUT / entry["ram"])], check=True)
    for form in spec["forms"]:
        path = raw
        if form == "pcapng":
            path = workdir / f"{name}.pcapng"
            subprocess.run(["editcap", "-F", "pcapng", str(raw), str(path)], check=True)
        elif form == "nsec.pcap":
            path = workdir / f"{name}.nsec.pcap"
            subprocess.run(["editcap", "-F", "nsecpcap", str(raw), str(path)], check=True)
        dest = OUT / f"pcap-{name}.{form}.zst"
        subprocess.run(["zstd", "-q", "-f", "-19", str(path), "-o", str(dest)], check=True)
        entry["captures"].append(dest.name)
    print(f"{name}: {ram.get('transferred')} bytes transferred, {raw.stat().st_size} bytes captured")
    return entry


def main(argv: list[str]) -> None:
    names = argv or list(VARIANTS)
    manifest_path = OUT / "pcap.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        guest = build_guest(workdir)
        for name in names:
            entry = capture(name, VARIANTS[name], workdir, guest)
            manifest = [e for e in manifest if e["name"] != entry["name"]] + [entry]
    manifest.sort(key=lambda e: e["name"])
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
