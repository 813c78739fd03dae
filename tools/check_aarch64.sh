#!/usr/bin/env bash
# usage: bash tools/check_aarch64.sh            (as root, on an x86-64 Debian/Ubuntu host)
#
# Prove the edgepsl client on aarch64 under QEMU user-mode emulation (docs/arm.md):
#   1. restore (or, the first time, build) a cached arm64 Debian bookworm root filesystem with Python 3.11, gcc and
#      the pinned client dependencies (tools/aarch64/requirements.txt), kept in $EDGEPSL_CACHE (/var/cache/edgepsl);
#   2. pip install the project's sdist inside it, so the compiled core builds on aarch64, and run the aarch64 test
#      set: tools/aarch64/client_checks.py (compiled core active and equal to the pure twin; LeNet segments train a
#      step) and a client in the chroot training 2 rounds with a coordinator and a helper running natively on the
#      host over 127.0.0.1 with CURVE;
#   3. cross-build the linux_aarch64 wheel (tools/build_aarch64_wheel.sh), install it in a fresh copy of the
#      dependency venv and run the same test set with it.
# Every mount and process is undone on exit, on failure too. Exit status 0 only when everything passed.
# Environment: EDGEPSL_CACHE (cache directory), MIRROR (Debian mirror; default: the host's apt source),
#              QEMU_CPU (emulated CPU, default cortex-a72 as on a Raspberry Pi 4), KEEP_WORK=1 (keep the work dir).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${EDGEPSL_CACHE:-/var/cache/edgepsl}"
qemu_cpu="${QEMU_CPU:-cortex-a72}"
pins="$root/tools/aarch64/requirements.txt"
host_packages=(qemu-user-static binfmt-support debootstrap zstd)
rootfs_packages=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates
dataset_dir=/usr/share/datasets/fashion-mnist
binfmt=/proc/sys/fs/binfmt_misc
step_timeout=900
run_timeout=600

work="" rootfs="" shared="" host_py="$root/.venv/bin/python"
mounts=() pids=() child="" binfmt_mounted=0 binfmt_enabled=0 started=$SECONDS

log() { echo "check_aarch64: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

timed() {
    local label=$1 t0=$SECONDS
    shift
    "$@"
    log "$label: $((SECONDS - t0)) s"
}

require_host() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it mounts binfmt_misc, /proc and /dev into a chroot)"
    [ "$(uname -m)" = x86_64 ] || die "expects an x86-64 host, this is $(uname -m)"
    command -v apt-get >/dev/null || die "expects a Debian/Ubuntu host with apt-get"
}

install_host_packages() {
    local missing=() pkg
    for pkg in "${host_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing host packages: ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
        die "cannot install host packages ${missing[*]} (apt-get failed; install them by hand)"
}

enable_binfmt() {
    if ! mountpoint -q "$binfmt"; then
        mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null ||
            die "cannot mount binfmt_misc on $binfmt (an unprivileged container?); QEMU user emulation needs it"
        binfmt_mounted=1
    fi
    if ! grep -q '^enabled' "$binfmt/qemu-aarch64" 2>/dev/null; then
        update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
        grep -q '^enabled' "$binfmt/qemu-aarch64" 2>/dev/null || die "cannot register qemu-aarch64 with binfmt_misc"
        binfmt_enabled=1
    fi
    grep -q '^flags: .*F' "$binfmt/qemu-aarch64" || die "qemu-aarch64 is registered without the F flag; reinstall qemu-user-static"
}

ensure_host_env() {
    [ -x "$root/.venv/bin/edgepsl" ] || bash "$root/tools/setup_env.sh" ""
    "$host_py" -c 'import sys; assert sys.version_info[:2] == (3, 11)' ||
        die "the host venv must be Python 3.11 like the arm64 rootfs (the cross-built wheel is cp311)"
    [ -d "$dataset_dir" ] || die "$dataset_dir is missing: apt-get install dataset-fashion-mnist"
}

cache_file() {
    local key
    key=$( { echo "$rootfs_packages"; cat "$pins"; } | sha256sum | cut -c1-12)
    echo "$cache_dir/aarch64-rootfs-bookworm-$key.tar.zst"
}

debian_mirror() {
    local mirror="${MIRROR:-}"
    [ -n "$mirror" ] || mirror=$(grep -shoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list |
        grep -v security | head -1 | grep -oE 'https?://[^ ]+' || true)
    [ -n "$mirror" ] || die "cannot find a Debian mirror in the host's apt sources; set MIRROR"
    echo "$mirror"
}

bootstrap_rootfs() {
    local mirror
    mirror=$(debian_mirror)
    log "building the arm64 bookworm rootfs from $mirror (once; about 5 minutes)"
    timeout "$step_timeout" debootstrap --arch=arm64 --foreign --variant=minbase --include="$rootfs_packages" \
        bookworm "$rootfs" "$mirror" >"$work/debootstrap-1.log" 2>&1 || die "debootstrap stage 1 failed: see $work/debootstrap-1.log"
    timeout "$step_timeout" chroot "$rootfs" /debootstrap/debootstrap --second-stage >"$work/debootstrap-2.log" 2>&1 ||
        die "debootstrap stage 2 (emulated) failed: see $work/debootstrap-2.log"
    chroot "$rootfs" apt-get clean
}

install_venv() {
    log "creating /opt/venv with $(grep -c '==' "$pins") pinned packages (emulated pip)"
    in_chroot /usr/bin/python3 -m venv /opt/venv
    in_chroot /opt/venv/bin/python -m pip install -q --no-cache-dir -r /tmp/requirements.txt || die "pip install of the pins failed"
}

save_cache() {
    local cache=$1
    mkdir -p "$cache_dir"
    tar -C "$rootfs" --numeric-owner --exclude="./${work#/}" -cf - . | zstd -T0 -3 -q -f -o "$cache.$$.tmp"
    mv "$cache.$$.tmp" "$cache"
    log "cached the rootfs in $cache ($(du -h "$cache" | cut -f1))"
}

restore_rootfs() {
    mkdir -p "$rootfs"
    zstd -dc "$1" | tar -C "$rootfs" --numeric-owner -xf - || die "cannot restore $1 (delete it to rebuild)"
}

mount_at() {
    local target=$1
    shift
    [ -e "$target" ] || mkdir -p "$target"
    mount "$@" "$target" || die "cannot mount $target"
    mounts+=("$target")
}

bind() {
    mount_at "$2" --bind "$1" "${@:3}"
}

mount_chroot() {
    mount_at "$rootfs/proc" -t proc proc
    mount_at "$rootfs/sys" -t sysfs sys
    bind /dev "$rootfs/dev"
    bind /dev/pts "$rootfs/dev/pts"
    bind "$root/tools/aarch64/cpuinfo" "$rootfs/proc/cpuinfo"
    bind "$dataset_dir" "$rootfs$dataset_dir" -o ro
    bind "$shared" "$rootfs$shared"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/host-ca.crt"
    cp "$pins" "$rootfs/tmp/requirements.txt"
}

unmount_chroot() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || log "cannot unmount ${mounts[i]}"
    done
    mounts=()
}

in_chroot() {
    local venv=${VENV:-/opt/venv} rc=0
    timeout "$run_timeout" chroot "$rootfs" /usr/bin/env -i PATH="$venv/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root \
        LANG=C.UTF-8 QEMU_CPU="$qemu_cpu" PIP_CERT=/etc/ssl/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_NO_INPUT=1 OMP_NUM_THREADS=1 "$@" &
    child=$!
    wait "$child" || rc=$?
    child=""
    return "$rc"
}

prepare_rootfs() {
    local cache
    cache=$(cache_file)
    if [ -f "$cache" ]; then
        timed "restore cached rootfs" restore_rootfs "$cache"
        timed "mount" mount_chroot
        return
    fi
    timed "debootstrap" bootstrap_rootfs
    timed "mount" mount_chroot
    timed "venv and pinned packages" install_venv
    unmount_chroot
    timed "save cache" save_cache "$cache"
    timed "mount" mount_chroot
}

prepare_shared() {
    mkdir -p "$shared/dist"
    (cd "$root" && "$host_py" setup.py -q sdist --dist-dir "$shared/dist" >"$work/sdist.log" 2>&1) || die "sdist failed: see $work/sdist.log"
    cp -r "$root/edgepsl/artifacts/lenet5-fmnist" "$shared/artifact"
    cp "$root/tools/aarch64/client_checks.py" "$shared/"
    (cd / && "$host_py" -P "$shared/client_checks.py" segments "$shared/artifact" --write "$shared/reference.json")
    make_keys
    write_run_config
}

make_keys() {
    local name
    for name in coordinator helper0 client0; do
        "$host_py" -m edgepsl keys --dir "$shared/keys" new "$name" >/dev/null
    done
    for name in helper0 client0; do
        "$host_py" -m edgepsl keys --dir "$shared/keys" allow "$name" "$shared/keys/$name.key" >/dev/null
    done
}

write_run_config() {
    cat >"$shared/run.toml" <<EOF
run_id = "aarch64"
artifact = "$shared/artifact"
clients = 1
helpers = 1
rounds = 2
batch_size = 16
aggregate_every = 2
eval_every = 2
train_samples = 256
test_samples = 200
profile_iters = 1
register_timeout_s = 120.0
round_timeout_s = 240.0
EOF
}

install_sdist() {
    in_chroot python -m pip install -q --no-index --no-build-isolation "$shared"/dist/edgepsl-*.tar.gz ||
        die "pip install of the sdist inside the chroot failed"
}

build_wheel() {
    bash "$root/tools/build_aarch64_wheel.sh" --rootfs "$rootfs" --out "$shared/wheel" >"$work/wheel.log" 2>&1 ||
        die "cross-building the wheel failed: see $work/wheel.log"
}

install_wheel() {
    cp -a "$rootfs/opt/venv" "$rootfs/opt/venv-wheel"
    VENV=/opt/venv-wheel in_chroot python -m pip install -q --no-index "$shared"/wheel/edgepsl-*-linux_aarch64.whl ||
        die "pip install of the cross-built wheel inside the chroot failed"
}

wait_for_line() {
    local file=$1 pattern=$2 deadline=$((SECONDS + 60))
    until grep -qE "$pattern" "$file" 2>/dev/null; do
        ((SECONDS < deadline)) || die "timed out waiting for '$pattern' in $file"
        sleep 0.5
    done
    grep -oE "$pattern" "$file" | head -1
}

exchange() {
    local label=$1 run="$shared/run-$1" keys=(--keys "$shared/keys") endpoint client_rc=0 coordinator_rc=0
    local coordinator_pid helper_pid
    timeout "$run_timeout" "$host_py" -m edgepsl coordinator --config "$shared/run.toml" --run-dir "$run" \
        --bind "tcp://127.0.0.1:*" "${keys[@]}" --key coordinator >"$work/coordinator-$label.log" 2>&1 &
    coordinator_pid=$!
    pids+=("$coordinator_pid")
    endpoint=$(wait_for_line "$work/coordinator-$label.log" 'tcp://127\.0\.0\.1:[0-9]+')
    timeout "$run_timeout" "$host_py" -m edgepsl helper --coordinator "$endpoint" --name helper0 "${keys[@]}" \
        --key helper0 --server-key "$shared/keys/coordinator.key" >"$work/helper-$label.log" 2>&1 &
    helper_pid=$!
    pids+=("$helper_pid")
    in_chroot edgepsl client --coordinator "$endpoint" --name client0 "${keys[@]}" --key client0 \
        --server-key "$shared/keys/coordinator.key" >"$work/client-$label.log" 2>&1 || client_rc=$?
    ((client_rc == 0)) || die "the aarch64 client exited with $client_rc: $(tail -5 "$work/client-$label.log")"
    wait "$coordinator_pid" || coordinator_rc=$?
    ((coordinator_rc == 0)) || die "the coordinator exited with $coordinator_rc: $(tail -5 "$work/coordinator-$label.log")"
    wait "$helper_pid" || die "the helper failed: $(tail -5 "$work/helper-$label.log")"
    grep -q "test accuracy:" "$work/coordinator-$label.log" || die "the coordinator did not evaluate the trained model"
    [ "$(wc -l <"$run/metrics.jsonl")" -eq 2 ] || die "expected 2 rounds in $run/metrics.jsonl"
    log "exchange ($label): $(grep -E 'test accuracy' "$work/coordinator-$label.log" | head -1 | sed 's/^ *//')"
}

test_set() {
    local label=$1
    in_chroot edgepsl --version | tee "$work/version-$label.txt" >&2
    grep -q "scheduling core: compiled" "$work/version-$label.txt" || die "the compiled core is not active ($label)"
    in_chroot sh -c "cd / && python -P $shared/client_checks.py core" || die "core checks failed ($label)"
    in_chroot sh -c "cd / && python -P $shared/client_checks.py segments $shared/artifact --expect $shared/reference.json" ||
        die "segment checks failed ($label)"
    timed "exchange ($label)" exchange "$label"
}

stop_processes() {
    local pid
    [ -z "$child" ] || pids+=("$child")
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

restore_binfmt() {
    ((binfmt_enabled)) && update-binfmts --disable qemu-aarch64 >/dev/null 2>&1
    ((binfmt_mounted)) && umount "$binfmt"
    return 0
}

cleanup() {
    local rc=$?
    stop_processes
    unmount_chroot
    restore_binfmt
    if [ -n "$work" ] && ! grep -q " $work" /proc/mounts; then
        [ "${KEEP_WORK:-0}" = 1 ] && log "work directory kept: $work" || rm -rf --one-file-system "$work"
    elif [ -n "$work" ]; then
        log "something is still mounted under $work; not deleting it"
    fi
    ((rc == 0)) && log "PASSED in $((SECONDS - started)) s" || log "exit status $rc after $((SECONDS - started)) s"
}

main() {
    require_host
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    timed "host packages" install_host_packages
    enable_binfmt
    ensure_host_env
    work=$(mktemp -d /var/tmp/edgepsl-aarch64.XXXXXX)
    rootfs="$work/rootfs" shared="$work/shared"
    mkdir -p "$shared"
    timed "sdist, keys, reference" prepare_shared
    prepare_rootfs
    timed "pip install sdist (emulated build)" install_sdist
    timed "test set (sdist)" test_set sdist
    timed "cross-build wheel" build_wheel
    timed "install wheel" install_wheel
    VENV=/opt/venv-wheel timed "test set (wheel)" test_set wheel
}

main "$@"
