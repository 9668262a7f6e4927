#!/usr/bin/env bash
# Make this machine able to run the Docker sandbox (used by .ci/run; safe to re-run):
#   1. install Docker's engine (Debian's docker.io) and debootstrap with apt if dockerd is missing;
#   2. start dockerd in the background if the engine does not answer, and wait for it;
#   3. build the sandbox image unless it is already built for this project version.
#
#   scripts/ensure-docker.sh [--no-build]
#
# Needs root for steps 1-2 (CI machines). PYTHON names the interpreter that has etpo-gym installed
# (default: .venv/bin/python if present, else python3). DOCKERD_LOG: where dockerd logs.
set -euo pipefail

cd "$(dirname "$0")/.."
build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "ensure-docker.sh: unknown argument $arg (accepted: --no-build)" >&2; exit 2 ;;
  esac
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "ensure-docker.sh: '$*' needs root (no sudo here)" >&2; return 1
  fi
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-docker: installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

engine_answers() { docker info >/dev/null 2>&1; }

if ! engine_answers; then
  log="${DOCKERD_LOG:-/var/log/etpo-dockerd.log}"
  echo "ensure-docker: starting dockerd in the background (log: $log)"
  # setsid + nohup: the engine outlives this script and the CI step that ran it.
  as_root setsid nohup dockerd >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
  if ! engine_answers; then
    echo "ensure-docker: dockerd did not answer within 60 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
  fi
fi
echo "ensure-docker: engine $(docker version --format '{{.Server.Version}}') answers"

if [ "$build" -eq 1 ]; then
  python="${PYTHON:-}"
  if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
  fi
  "$python" -m etpo_gym.sandbox.manage build
fi
