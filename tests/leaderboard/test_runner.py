"""The benchmark runner for real: kernels, a SIGKILL mid-run, resume, parallel cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etpo_gym.errors import ConfigError
from etpo_gym.leaderboard import run_benchmark
from etpo_gym.leaderboard.runner import read_results

HERE = Path(__file__).parent
AGENTS = "logreg,agents_for_tests:ConstantAgent"


def _bench(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "etpo_gym", "bench", "--agents", AGENTS, "--tasks", "smoke-v0",
            "--seeds", "2", "--max-steps", "2", "--out", str(out), "--quiet", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def _scores(out: Path) -> dict[str, float]:
    return {r["key"]: r["final_reward"] for r in read_results(out / "results.jsonl")}


@pytest.mark.slow
def test_sigkill_then_rerun_completes_every_cell_exactly_once(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _bench(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(read_results(killed / "results.jsonl")) < 2:
        if proc.poll() is not None:
            pytest.fail(f"bench ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_results(killed / "results.jsonl")
    assert 2 <= len(partial) < 8
    with open(killed / "results.jsonl", "ab") as fh:  # as if the kill tore a line mid-write
        fh.write(b'{"key": "torn')
    again = subprocess.run(_bench(killed), env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    records = read_results(killed / "results.jsonl")
    keys = [r["key"] for r in records]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert {k: r for k, r in zip(keys, records)}.keys() >= {p["key"] for p in partial}

    clean = tmp_path / "clean"
    done = subprocess.run(_bench(clean, "--jobs", "2"), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _scores(clean) == _scores(killed)  # deterministic agents: the same numbers
    board = json.loads((killed / "leaderboard.json").read_text())
    assert board["header"]["cells"] == "8/8"
    rows = board["per_task"]["skill_interactions"]
    assert rows["logreg"]["n"] == 2 and rows["agents_for_tests:ConstantAgent"][
        "mean"
    ] == pytest.approx(0.5)
    # a different run into the same directory is refused, naming the difference
    other = subprocess.run(
        [*_bench(killed)[:-1], "--seeds", "3", "--quiet"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert other.returncode == 2 and "seeds" in other.stderr


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--seeds 0"):
        run_benchmark(["logreg"], "smoke-v0", 0, tmp_path)
    with pytest.raises(ConfigError, match="'nope'"):
        run_benchmark(["nope"], "smoke-v0", 1, tmp_path)
    assert not (tmp_path / "results.jsonl").exists()
