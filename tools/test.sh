#!/usr/bin/env bash
# Set up everything the test suite needs (see tools/setup_env.sh), then run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/setup_env.sh "dev,plot,solvers,tools"
exec .venv/bin/python -m pytest -q "$@"
