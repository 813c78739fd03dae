#!/usr/bin/env bash
# Set up edgepsl (see tools/setup_env.sh), then run the main job: plan a round on a real device profile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/setup_env.sh "plot"
exec .venv/bin/edgepsl plan --profile resnet101_cifar10 --scenario 1 --clients 50 --helpers 5 --seed 0 \
    --method greedy-ls --out runs/plan-demo "$@"
