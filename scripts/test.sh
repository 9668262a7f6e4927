#!/usr/bin/env bash
# Set up .venv, then lint and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
# Three test processes: most tests wait on kernels, containers and clusters rather than compute.
# The 15 slowest tests are listed at the end: where the suite's time goes, run by run.
python -m pytest -q -rfEs -n 3 --dist load --durations=15 "$@"
