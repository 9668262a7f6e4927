#!/usr/bin/env bash
# Set up .venv, then train the ETPO agent (the shipped CPU starter policy) against DataSci-v0 in
# the local kernel sandbox: no Docker, no GPU, no downloads. Extra arguments go to `etpo-gym train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec etpo-gym train --task skill_interactions --model starter --device cpu --sandbox local --steps 30 \
  --seed 0 --out runs/demo "$@"
