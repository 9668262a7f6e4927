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
from etpo_gym.leaderboard.suites import SUITES

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


@pytest.mark.slow
def test_agent_objects_and_file_specs_run_and_show_by_name(tmp_path):
    class Forest:
        name = "my-forest"

        def act(self, observation: str, info: dict) -> str:
            return (
                "    from sklearn.ensemble import RandomForestClassifier\n"
                "    model = RandomForestClassifier(n_estimators=20, random_state=0)\n"
                "    model.fit(x_train, y_train)\n"
            )

    logs: list[str] = []
    out = run_benchmark(
        [Forest(), f"{HERE / 'agents_for_tests.py'}:ConstantAgent", "logreg"],
        "breast_cancer",
        seeds=1,
        out=tmp_path / "run",
        sandbox="local",
        max_steps=1,
        first_seed=7,
        env_kwargs={"prompt_style": "rich"},
        progress=False,
        log=logs.append,
    )
    assert logs == ["sandbox local"]
    records = read_results(out / "results.jsonl")
    assert {r["agent_name"] for r in records} == {"my-forest", "constant", "logreg"}
    assert {r["seed"] for r in records} == {7} and {r["metric"] for r in records} == {"roc_auc"}
    run = json.loads((out / "run.json").read_text())["config"]
    assert run["extra"] == {"prompt_style": "rich"} and run["seeds"] == [7]
    md = (out / "leaderboard.md").read_text()
    assert "`my-forest`" in md and "`constant`" in md and "prompt_style" in md


def test_bad_bench_input_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    cases = [
        (["--agents", "gpt5"], "unknown agent 'gpt5'; accepted: a registered agent (etpo:RUN_DIR"),
        (["--agents", "my_agent:X"], "make it importable"),
        (
            ["--agents", "logreg", "--tasks", "nosuch"],
            f"({', '.join(s.id for s in SUITES.values())})",
        ),
        (["--agents", "logreg", "--tasks", "core-v9"], "core-v9"),
        (["--agents", "logreg", "--env", "CartPole-v1"], "invalid choice: 'CartPole-v1'"),
        (["--agents", "logreg", "--env-kwargs", "{nope"], "--env-kwargs '{nope' is not JSON"),
        (["--agents", "logreg", "--env-kwargs", "[1]"], "give a JSON object"),
        (["--agents", "logreg", "--env-kwargs", '{"colour": 1}'], "'colour'"),
        (["--agents", "logreg", "--env-kwargs", '{"task": "wine"}'], "set by the runner"),
        (["--agents", "logreg", "--seeds", "0"], "--seeds 0: must be an integer >= 1"),
        (["--agents", "logreg", "--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
        (["--agents", "logreg", "--first-seed", "-1"], "--first-seed -1"),
        (["--agents", "logreg", "--jobs", "0"], "--jobs 0"),
        (["--agents", "logreg", "--sandbox", "dockr"], "invalid choice: 'dockr'"),
        (["--agents", ","], "--agents ',': give at least one agent spec"),
    ]
    for args, needle in cases:
        done = subprocess.run(
            [sys.executable, "-m", "etpo_gym", "bench", "--out", str(out), "--quiet", *args],
            capture_output=True, text=True, env=_env(), cwd=tmp_path,
        )  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (args, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("etpo-gym bench: "), (args, done.stderr)
        assert needle in lines[0], (args, lines[0])
        assert not out.exists(), args
