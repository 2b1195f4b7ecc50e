#!/bin/bash
# Fetch QEMU's scripts/analyze-migration.py (Debian bookworm's qemu source)
# into a cache directory OUTSIDE the repository, for the extract benchmark.
#
#   bash benchmarks/get_analyze_migration.sh [CACHE_DIR]
#
# CACHE_DIR defaults to $MIGSTREAM_BENCH_DIR or /var/tmp/migstream-bench.
# Result: CACHE_DIR/qemu-scripts/analyze-migration.py (path printed last).
#
# Steps: add a temporary deb-src entry for bookworm main on the Debian mirror
# this machine already uses, apt-get update, `apt-get source --download-only
# qemu`, and extract only scripts/analyze-migration.py from the orig tarball
# (7.2's script imports nothing but the standard library; any scripts/ module
# it would import is extracted too).  The deb-src entry is removed again at the
# end (KEEP_DEB_SRC=1 keeps it).  QEMU code must never be committed to the
# repository: everything lands in CACHE_DIR.  Needs root for apt.
set -euo pipefail

CACHE_DIR=${1:-${MIGSTREAM_BENCH_DIR:-/var/tmp/migstream-bench}}
OUT_DIR="$CACHE_DIR/qemu-scripts"
SRC_DIR="$CACHE_DIR/qemu-src"
TARGET="$OUT_DIR/analyze-migration.py"
DEBSRC=/etc/apt/sources.list.d/migstream-bench-deb-src.sources

if [[ -s "$TARGET" && "${FORCE:-0}" != 1 ]]; then
    echo "already present (FORCE=1 to refetch)" >&2
    echo "$TARGET"
    exit 0
fi

# --- find the Debian mirror in use ------------------------------------------
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" && "$f" != "$DEBSRC" ]] || continue
    # deb822: first URIs line of a stanza whose Suites include bookworm
    m=$(awk 'BEGIN{RS=""; FS="\n"}
             /Suites:[^\n]*bookworm([ \t\n]|$)/ {
               for (i=1;i<=NF;i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); print a[1]; exit } }' "$f")
    if [[ -n "$m" ]]; then mirror=$m; break; fi
done
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror=$(awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}
echo "Debian mirror: $mirror" >&2

# apt may be busy (another apt-get running): retry on lock errors
apt_retry() {
    local i
    for i in $(seq 1 60); do
        if "$@" -o DPkg::Lock::Timeout=60; then return 0; fi
        echo "apt busy or failed, retrying in 5 s ($i/60)" >&2
        sleep 5
    done
    return 1
}

cleanup() {
    if [[ "${KEEP_DEB_SRC:-0}" != 1 && -f "$DEBSRC" ]]; then
        rm -f "$DEBSRC"
    fi
}
trap cleanup EXIT

cat > "$DEBSRC" <<EOF
# added by migstream benchmarks/get_analyze_migration.sh (removed afterwards)
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

apt_retry apt-get update -q >&2
command -v xz >/dev/null || apt_retry apt-get install -y -q xz-utils >&2

mkdir -p "$SRC_DIR" "$OUT_DIR"
cd "$SRC_DIR"
if ! ls qemu_*.orig.tar.* >/dev/null 2>&1; then
    # apt-get source runs unprivileged downloads as _apt; let it write here
    chmod 777 "$SRC_DIR" 2>/dev/null || true
    apt_retry apt-get source --download-only qemu >&2
fi
orig=$(ls qemu_*.orig.tar.* | grep -v '\.asc$' | head -n1)
echo "orig tarball: $SRC_DIR/$orig" >&2

member=$(tar -tf "$orig" --wildcards '*/scripts/analyze-migration.py' | head -n1)
[[ -n "$member" ]] || { echo "scripts/analyze-migration.py not in $orig" >&2; exit 1; }
prefix=${member%%/scripts/analyze-migration.py}
tar -xf "$orig" -O "$member" > "$TARGET.tmp"
mv "$TARGET.tmp" "$TARGET"

# helpers from scripts/ that it imports, if any (none in 7.2)
for mod in $(sed -n 's/^\s*\(from\|import\)\s\+\([A-Za-z_][A-Za-z0-9_]*\).*/\2/p' "$TARGET" | sort -u); do
    if tar -tf "$orig" "$prefix/scripts/$mod.py" >/dev/null 2>&1; then
        tar -xf "$orig" -O "$prefix/scripts/$mod.py" > "$OUT_DIR/$mod.py"
        echo "also extracted scripts/$mod.py" >&2
    fi
done

echo "version: $(basename "$orig")" > "$OUT_DIR/SOURCE"
echo "$TARGET"
