#!/usr/bin/env bash
# Create .venv and install etpo-gym with the agent, trl, ray and dev extras (idempotent, quick
# when done).
# torch: a pinned release is installed first so that pip does not pick a multi-GB build by itself;
# set TORCH_SPEC to choose another (e.g. TORCH_SPEC="torch==2.5.1" with a CUDA index).
set -euo pipefail
cd "$(dirname "$0")/.."
# The local sandbox's "namespaces" isolation needs bubblewrap (Debian/Ubuntu package bubblewrap).
# Installed here when this runs as root with apt (CI, containers); otherwise say how.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing bubblewrap with apt (local sandbox isolation)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "setup: bubblewrap (bwrap) is missing: the local sandbox falls back to isolation 'none';" \
      "install the bubblewrap package (e.g. sudo apt-get install bubblewrap)" >&2
  fi
fi
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
echo "setup: installing etpo-gym and its dependencies into .venv (a few minutes the first time)" >&2
# -qq: errors only. pip would otherwise show setuptools' notes about editable installs, which
# are about setuptools, not about this project.
.venv/bin/python -m pip install -qq --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -qq "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -qq -e ".[agent,trl,ray,dev]"
echo "$want" > "$stamp"
echo "setup: done" >&2
