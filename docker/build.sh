#!/usr/bin/env bash
# Build the etpo-gym sandbox image (idempotent): the same as `etpo-gym sandbox build`. The build
# context (Dockerfile, supervisor) is etpo_gym/sandbox/container/, shipped inside the package.
#   docker/build.sh [--base IMAGE] [--tag TAG] [--mirror URL] [--force]
# PYTHON: the interpreter with etpo-gym installed (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" -m etpo_gym.sandbox.manage build "$@"
