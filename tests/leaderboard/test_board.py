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


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _run_dir(tmp_path: Path, records: list[dict], agents: list[str], max_steps: int = 5) -> Path:
    config = {"suite": "custom-v0", "suite_digest": "x", "tasks": sorted({r["task"] for r in records}),
              "agents": agents, "seeds": [0, 1], "sandbox": "local", "max_steps": max_steps}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"config": config, "versions": {}}))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_board_json_is_strict_and_names_replace_specs(tmp_path):
    records = [
        {**_record("wine", "etpo:runs/a/skill__etpo__1", 0, 0.9), "agent_name": "etpo:skill__etpo__1"},
        {**_record("wine", "mod:Agent", 0, 0.8), "agent_name": "my-agent"},
        {**_record("wine", "twin:A", 0, 0.7), "agent_name": "same"},
        {**_record("wine", "twin:B", 0, 0.6), "agent_name": "same"},
    ]  # fmt: skip
    agents = [r["agent"] for r in records]
    out = _run_dir(tmp_path, records, agents)
    render(out)
    board = _strict_json(out / "leaderboard.json")
    assert board["per_task"]["wine"]["mod:Agent"]["sem"] is None  # one seed: undefined, null
    assert board["names"] == {
        "etpo:runs/a/skill__etpo__1": "etpo:skill__etpo__1",
        "mod:Agent": "my-agent",
        "twin:A": "twin:A",  # a shared name would be ambiguous: the specs are shown
        "twin:B": "twin:B",
    }
    md = (out / "leaderboard.md").read_text()
    assert (
        "`my-agent`" in md
        and "`etpo:skill__etpo__1`" in md
        and "runs/a/" not in md.split("Agents by name")[0]
    )
    assert "nan" not in (out / "leaderboard.csv").read_text().lower()


def test_plots_colour_per_agent_share_scales_and_skip_a_flat_attempt_plot(tmp_path):
    from etpo_gym.leaderboard.board import attempts_figure, board_figure, summarise

    records = [_record(t, a, s, r) for t, a, s, r in (
        ("wine", "logreg", 0, 0.9), ("wine", "rf", 0, 0.99),
        ("digits", "logreg", 0, 0.7), ("digits", "rf", 0, 0.8),
        ("diabetes", "logreg", 0, 0.3), ("diabetes", "rf", 0, -1.0),
    )]  # fmt: skip
    out = _run_dir(tmp_path, records, ["logreg", "rf"])
    render(out)
    assert (out / "leaderboard.png").stat().st_size > 0
    assert not (out / "reward_by_attempt.png").exists()  # every episode ended in one attempt

    summary = summarise(records, ["logreg", "rf"], ["wine", "digits", "diabetes"])
    metrics = {"wine": "roc_auc", "digits": "roc_auc", "diabetes": "r2"}
    header = {"suite": "custom-v0", "seeds": [0, 1, 2], "max_steps": 5}
    names = {"logreg": "logreg", "rf": "rf"}
    fig = board_figure(header, summary, ["wine", "digits", "diabetes"], names, metrics)
    wine, digits, diabetes = fig.axes[:3]
    assert wine.get_ylim() == digits.get_ylim() != diabetes.get_ylim()  # same metric, same scale
    assert wine.get_ylabel() == "ROC AUC" and diabetes.get_ylabel() == "R²"
    assert "custom-v0" in fig._suptitle.get_text() and "seeds 0–2" in fig._suptitle.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["rf", "logreg"]  # ranked
    colours = {line.get_color() for line in wine.lines}
    assert len(colours) == 2

    assert attempts_figure(header, ["logreg", "rf"], names, records) is None
    records.append({**_record("wine", "rf", 1, 0.95, steps=2), "rewards": [-1.0, 0.95]})
    fig = attempts_figure(header, ["logreg", "rf"], names, records)
    rf = next(line for line in fig.axes[0].lines if line.get_label() == "rf")
    # rf's episodes: 0.99, 0.8, -1.0 (one attempt each) and [-1.0, 0.95]: cut after one
    # attempt the last scores -1.0, after two or more 0.95
    first, later = (0.99 + 0.8 - 1.0 - 1.0) / 4, (0.99 + 0.8 - 1.0 + 0.95) / 4
    assert list(rf.get_ydata()) == pytest.approx([first] + [later] * 4)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    render(out)
    assert (out / "reward_by_attempt.png").stat().st_size > 0
