#!/usr/bin/env bash
# What the test suite needs from the system on Debian 12, installed only when missing
# (run as root, or it uses sudo).  README's test command and .ci/run call it.
#   python3-venv       the project's virtual environment
#   qemu-system-*      real QEMU 7.2 for tests/test_qemu_*.py (x86, arm, misc: alpha, ppc)
#   qemu-utils         qemu-img and qemu-io for the qcow2 snapshot tests (tests/qemu/test_qemu_qcow2.py)
#   nasm               builds the test guest (samples/guest/guest.asm)
#   chromium           renders `migstream report` pages (tests/samples/test_report.py)
#   lzop               libvirt save images in lzop format are read with `lzop -dc`, as libvirt does
#   nodejs, npm        kaitai-struct-compiler checks that formats/qemu_migration.py matches the .ksy
#   gcc, python3-dev   build migstream/wire/_runscan.c, the compiled record walk (python3-dev only
#                      when the Python that runs pip has no headers, as Debian's own python3)
# and QEMU 10.0.2 from bookworm-backports, unpacked privately (samples/get_qemu10.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
have() { command -v "$1" >/dev/null 2>&1; }
need=()
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have qemu-system-aarch64 || need+=(qemu-system-arm)
have qemu-system-alpha || need+=(qemu-system-misc)
have qemu-system-ppc64 || need+=(qemu-system-ppc)
have qemu-io || need+=(qemu-utils)
have nasm || need+=(nasm)
have chromium || need+=(chromium)
have lzop || need+=(lzop)
have node || need+=(nodejs)
have npm || need+=(npm)
have gcc || need+=(gcc)
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
[ -f "$($PY -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi
QEMU10=${MIGSTREAM_QEMU10:-/var/tmp/qemu10}
[ -x "$QEMU10/usr/bin/qemu-system-x86_64" ] || bash samples/get_qemu10.sh "$QEMU10"
if [ -f formats/package-lock.json ] && [ ! -d formats/node_modules/kaitai-struct-compiler ]; then
    (cd formats && npm ci --no-audit --no-fund)
fi
