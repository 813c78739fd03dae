#!/usr/bin/env bash
# Set up edgepsl (see tools/setup_env.sh), then run the main job: parallel split learning on this machine
# (coordinator, 2 helpers and 6 clients as processes on 127.0.0.1; LeNet-5 on Fashion-MNIST). See docs/runtime.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/setup_env.sh "demo"
exec .venv/bin/edgepsl demo "$@"
