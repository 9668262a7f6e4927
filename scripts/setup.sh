#!/usr/bin/env bash
# Create .venv and install etpo-gym with the agent, trl and dev extras (idempotent, quick when done).
# torch: a pinned release is installed first so that pip does not pick a multi-GB build by itself;
# set TORCH_SPEC to choose another (e.g. TORCH_SPEC="torch==2.5.1" with a CUDA index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.etpo-gym-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -q -e ".[agent,trl,dev]"
echo "$want" > "$stamp"
