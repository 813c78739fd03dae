#!/usr/bin/env bash
# usage: bash tools/build_aarch64_wheel.sh [--rootfs DIR] [--out DIR]
#
# Cross-build a linux_aarch64 wheel of edgepsl (Python 3.11, with its two compiled extensions: the scheduling core
# edgepsl._core and the wire codec's fast path edgepsl.wire._codec) on an x86-64 Debian host with
# Debian's cross toolchain (crossbuild-essential-arm64, installed when missing and root). The target's Python
# headers, sysconfig data and numpy headers come from an arm64 bookworm root filesystem: --rootfs DIR, or the cache
# that tools/check_aarch64.sh builds in $EDGEPSL_CACHE (/var/cache/edgepsl). The wheel goes to --out (default dist/).
# The build runs from a fresh sdist in a temporary directory, so the checkout's build/ is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${EDGEPSL_CACHE:-/var/cache/edgepsl}"
host_py="$root/.venv/bin/python"
pyver=3.11
target_numpy=opt/venv/lib/python$pyver/site-packages/numpy/_core/include
target_files=("usr/include/python$pyver" "usr/include/aarch64-linux-gnu/python$pyver" "usr/lib/python$pyver"
    "$target_numpy")
rootfs="" out="$root/dist" tmp="" started=$SECONDS

log() { echo "build_aarch64_wheel: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case "$1" in
            --rootfs) rootfs=${2:?--rootfs needs a directory}; shift 2 ;;
            --out) out=${2:?--out needs a directory}; shift 2 ;;
            *) die "unknown argument $1 (usage: build_aarch64_wheel.sh [--rootfs DIR] [--out DIR])" ;;
        esac
    done
}

ensure_toolchain() {
    command -v aarch64-linux-gnu-gcc >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || die "aarch64-linux-gnu-gcc is missing: apt-get install crossbuild-essential-arm64 (as root)"
    log "installing crossbuild-essential-arm64"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        crossbuild-essential-arm64 >/dev/null; } || die "cannot install crossbuild-essential-arm64"
}

ensure_host_python() {
    [ -x "$host_py" ] || bash "$root/tools/setup_env.sh" ""
    "$host_py" -c "import sys; assert sys.version_info[:2] == (3, 11)" || die "the host venv must be Python $pyver"
    "$host_py" -c "import Cython, numpy, setuptools, wheel" 2>/dev/null || die "the host venv lacks Cython, numpy or wheel"
}

extract_target_files() {
    local cache
    cache=$(ls -t "$cache_dir"/aarch64-rootfs-*.tar.zst 2>/dev/null | head -1)
    [ -n "$cache" ] || die "no arm64 rootfs: pass --rootfs DIR, or run tools/check_aarch64.sh once to cache one in $cache_dir"
    rootfs="$tmp/target"
    mkdir -p "$rootfs"
    zstd -dc "$cache" | tar -C "$rootfs" -xf - "${target_files[@]/#/./}" || die "cannot read the target headers from $cache"
}

check_target() {
    local f
    for f in "${target_files[@]}"; do
        [ -e "$rootfs/$f" ] || die "$rootfs/$f is missing (an arm64 rootfs with python3-dev and the pinned numpy in /opt/venv?)"
    done
}

sysconfig_dir() {
    local data
    data=$(ls "$rootfs/usr/lib/python$pyver"/_sysconfigdata__*aarch64-linux-gnu.py 2>/dev/null | head -1)
    [ -n "$data" ] || die "no aarch64 _sysconfigdata in $rootfs/usr/lib/python$pyver"
    mkdir -p "$tmp/sysconfig"
    cp "$data" "$tmp/sysconfig/"
    basename "$data" .py
}

unpack_sdist() {
    (cd "$root" && "$host_py" setup.py -q sdist --dist-dir "$tmp/sdist" >"$tmp/sdist.log" 2>&1) ||
        die "sdist failed: $(tail -5 "$tmp/sdist.log")"
    tar -C "$tmp" -xzf "$tmp"/sdist/edgepsl-*.tar.gz
}

cross_build() {
    local data_name=$1 src
    src=$(ls -d "$tmp"/edgepsl-*/ | head -1)
    mkdir -p "$out"
    (cd "$src" && env _PYTHON_HOST_PLATFORM=linux-aarch64 _PYTHON_SYSCONFIGDATA_NAME="$data_name" \
        PYTHONPATH="$tmp/sysconfig" CC=aarch64-linux-gnu-gcc LDSHARED="aarch64-linux-gnu-gcc -shared" \
        CFLAGS="-I$rootfs/usr/include/python$pyver -I$rootfs/$target_numpy -idirafter $rootfs/usr/include" \
        "$host_py" setup.py -q bdist_wheel --dist-dir "$out" >"$tmp/build.log" 2>&1) ||
        die "cross build failed: $(tail -20 "$tmp/build.log")"
}

check_wheel() {
    local wheel
    wheel=$(ls -t "$out"/edgepsl-*-cp311-cp311-linux_aarch64.whl 2>/dev/null | head -1)
    [ -n "$wheel" ] || die "no linux_aarch64 wheel in $out: $(tail -5 "$tmp/build.log")"
    "$host_py" - "$wheel" <<'EOF' || die "the wheel does not hold exactly the two extensions as aarch64 ELF files"
import sys, zipfile
expected = ["edgepsl/_core.cpython-311-aarch64-linux-gnu.so", "edgepsl/wire/_codec.cpython-311-aarch64-linux-gnu.so"]
with zipfile.ZipFile(sys.argv[1]) as whl:
    names = sorted(n for n in whl.namelist() if n.endswith(".so"))
    assert names == expected, f"shared objects in the wheel: {names}, expected {expected}"
    for name in names:
        header = whl.read(name)[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, f"{name} is not aarch64"
EOF
    log "built $wheel in $((SECONDS - started)) s"
    echo "$wheel"
}

main() {
    local data_name
    parse_args "$@"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    ensure_toolchain
    ensure_host_python
    [ -n "$rootfs" ] || extract_target_files
    check_target
    data_name=$(sysconfig_dir)
    unpack_sdist
    cross_build "$data_name"
    check_wheel
}

main "$@"
