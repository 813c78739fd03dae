#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for edgepsl: system packages (when root), a virtualenv in .venv,
# and an editable install of edgepsl with the extras named in $1 (for example "dev,plot").
# Idempotent: a second run only installs what is missing.
set -euo pipefail
extras="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(python3 python3-venv python3-dev build-essential dataset-fashion-mnist)
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    for pkg in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" -eq 0 ]; then
            echo "setup: installing Debian packages: ${missing[*]}"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "setup: not root; make sure these Debian packages are installed: ${missing[*]}" >&2
        fi
    fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtualenv .venv with $($python --version)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel "Cython>=3.0" "numpy>=1.26"
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
echo "setup: pip install -e '$spec' (builds the compiled extensions)"
.venv/bin/python -m pip install -q --no-build-isolation -e "$spec"
.venv/bin/edgepsl --version
