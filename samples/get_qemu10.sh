#!/bin/bash
# Fetch QEMU 10.0.x (x86_64) from Debian bookworm-backports into a private folder,
# without installing it over the system QEMU 7.2 and without touching /etc/apt:
# apt runs with a private sources list, package lists and cache under a temp dir,
# so there is no added apt source to remove afterwards.
#
#   samples/get_qemu10.sh [ROOT]        (default ROOT=/var/tmp/qemu10)
#   QEMU_MODULE_DIR=ROOT/usr/lib/x86_64-linux-gnu/qemu ROOT/usr/bin/qemu-system-x86_64 --version
#
# Needs root only for nothing: apt-get download and dpkg-deb -x run as any user.
set -euo pipefail
ROOT=${1:-/var/tmp/qemu10}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS="qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui qemu-system-modules-opengl"

APTDIR=$(mktemp -d /tmp/qemu10-apt.XXXXXX)
trap 'rm -rf "$APTDIR"' EXIT
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-backports main" \
    > "$APTDIR/sources.list"
APT=(apt-get -q
     -o Dir::Etc::SourceList="$APTDIR/sources.list"
     -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$APTDIR/lists"
     -o Dir::Cache="$APTDIR/cache"
     -o APT::Sandbox::User=root)
"${APT[@]}" update
cd "$APTDIR/debs"
for p in $PKGS; do
    "${APT[@]}" download "$p/bookworm-backports"
done
mkdir -p "$ROOT"
for deb in *.deb; do
    echo "unpack $deb"
    dpkg-deb -x "$deb" "$ROOT"
done
QEMU_MODULE_DIR="$ROOT/usr/lib/x86_64-linux-gnu/qemu" "$ROOT/usr/bin/qemu-system-x86_64" --version
