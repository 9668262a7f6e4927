"""Leaderboard arithmetic against hand-computed values, suites, agent specs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.leaderboard import SUITES, get_suite, load_agent, normalised, render, sem
from etpo_gym.leaderboard.board import summarise
from etpo_gym.leaderboard.suites import suite_digest


def test_sem_by_hand():
    # values 1, 2, 4: mean 7/3, sample variance ((4/3)² + (1/3)² + (5/3)²)/2 = 7/3
    assert sem([1.0, 2.0, 4.0]) == pytest.approx(math.sqrt(7 / 3) / math.sqrt(3))
    assert sem([0.5, 0.5]) == 0.0
    assert math.isnan(sem([0.7]))


def test_normalised_by_hand():
    scores = normalised({"logreg": 0.6, "rf": 0.9, "bad": 0.3})
    assert scores == pytest.approx({"logreg": 0.0, "rf": 1.0, "bad": -1.0})
    # without logreg, the worst row is the reference
    assert normalised({"a": 0.5, "b": 0.75, "c": 1.0}) == pytest.approx({"a": 0, "b": 0.5, "c": 1})
    # a task that does not separate the agents from the reference has no normalised score
    flat = normalised({"logreg": 0.99, "rf": 0.995})
    assert all(math.isnan(v) for v in flat.values())


def _record(task, agent, seed, reward, success=True, steps=1, infra=0):
    return {"task": task, "agent": agent, "seed": seed, "final_reward": reward, "success": success,
            "steps": steps, "infra_errors": infra, "rewards": [reward]}  # fmt: skip


def test_summary_by_hand_excludes_infra_errors():
    records = [
        _record("t1", "logreg", 0, 0.6), _record("t1", "logreg", 1, 0.8),
        _record("t1", "rf", 0, 0.9), _record("t1", "rf", 1, 0.7),
        _record("t1", "rf", 2, 0.0, success=False, infra=1),  # excluded from scores
        _record("t2", "logreg", 0, -1.0, success=False, steps=5), _record("t2", "logreg", 1, 0.5, steps=2),
        _record("t2", "rf", 0, 0.5), _record("t2", "rf", 1, 0.7),
    ]  # fmt: skip
    s = summarise(records, ["logreg", "rf"], ["t1", "t2"])
    t1, t2 = s["per_task"]["t1"], s["per_task"]["t2"]
    assert t1["rf"]["n"] == 2 and t1["rf"]["infra_errors"] == 1
    assert t1["rf"]["mean"] == pytest.approx(0.8) and t1["logreg"]["mean"] == pytest.approx(0.7)
    assert t1["rf"]["sem"] == pytest.approx(0.1)  # |0.9 − 0.7| / 2
    assert t2["logreg"]["mean"] == pytest.approx(-0.25)
    assert t2["logreg"]["success_rate"] == 0.5 and t2["logreg"]["mean_steps"] == 3.5
    assert t1["rf"]["normalised"] == 1.0 and t2["rf"]["normalised"] == 1.0
    assert s["overall"]["rf"]["mean"] == pytest.approx((0.8 + 0.6) / 2)
    assert s["overall"]["logreg"]["normalised"] == 0.0
    assert s["ranking"] == ["rf", "logreg"]


def test_render_writes_tables_from_results_alone(tmp_path):
    config = {"suite": "custom-v0", "suite_digest": "x", "tasks": ["t1"], "agents": ["logreg", "rf"],
              "seeds": [0, 1], "sandbox": "local", "max_steps": 5}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"config": config, "versions": {"numpy": "2"}}))
    lines = [_record("t1", "logreg", 0, 0.6), _record("t1", "logreg", 1, 0.8),
             _record("t1", "rf", 0, 0.9), _record("t1", "rf", 1, 0.9)]  # fmt: skip
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    board = render(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "custom-v0" in md and "numpy 2" in md and "**0.900 ± 0.000**" in md
    assert board["ranking"] == ["rf", "logreg"]
    rows = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("task,agent,n,mean,sem") and len(rows) == 1 + 2 + 2
    assert (tmp_path / "leaderboard.png").stat().st_size > 0
    with pytest.raises(ConfigError, match=r"run\.json"):
        render(tmp_path / "nothing")


def test_suite_digests_match_their_recorded_versions():
    for name in ("core", "smoke"):
        suite = SUITES[name]
        assert suite_digest(suite.tasks) == suite.digest, f"{suite.id} changed: bump its version"
    assert [t.name for t in SUITES["core"].tasks][:2] == ["breast_cancer", "wine"]


def test_real_suite_digest():
    from etpo_gym.leaderboard.suites import REAL_DATA

    if not REAL_DATA.is_dir():
        pytest.skip(f"real datasets not found in {REAL_DATA} (needs the shared/ folder)")
    suite = SUITES["real"]
    assert suite_digest(suite.tasks) == suite.digest, "real-v0 changed: bump its version"


def test_suite_and_agent_specs(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert get_suite("core-v0") is SUITES["core"] and get_suite("smoke").id == "smoke-v0"
    custom = get_suite("wine,digits")
    assert [t.name for t in custom.tasks] == ["wine", "digits"]
    with pytest.raises(ConfigError, match="core-v9"):
        get_suite("core-v9")
    with pytest.raises(TaskError, match="nope"):
        get_suite("wine,nope")
    assert load_agent("hist-gb").name == "hist-gb"
    assert load_agent("random-template").name == "random-template"
    assert callable(load_agent("agents_for_tests:plain_function"))
    assert load_agent("agents_for_tests:ConstantAgent").name == "constant"
    with pytest.raises(ConfigError, match="'gpt5'"):
        load_agent("gpt5")
    with pytest.raises(ConfigError, match="nosuchmodule"):
        load_agent("nosuchmodule:x")
    with pytest.raises(ConfigError, match="etpo:RUN_DIR"):
        load_agent("etpo")
