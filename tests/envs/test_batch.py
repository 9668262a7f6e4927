"""prompt_dataset (first observations without kernels), reset options, the data schema, and
score_batch (the results of env.step, on a pool of warm sandboxes)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gymnasium as gym
import pytest

import etpo_gym
from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.schema import data_schema
from etpo_gym.tasks import holdout_split

LOGREG_BODY = """\
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
"""
FOREST_BODY = """\
from sklearn.ensemble import RandomForestClassifier
model = RandomForestClassifier(n_estimators=30, random_state=0).fit(x_train, y_train)
"""


def _own_sandbox_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"etpo-gym-local-{os.getpid()}-*"))


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("DataSci-v0", {}),
        ("DataSciRich-v0", {"observation_format": "chat"}),
        ("DataSciPaper-v0", {}),
        ("DataSciNotebook-v0", {"observation_format": "chat", "max_steps": 7}),
    ],
)
def test_prompt_dataset_is_the_first_observation_of_reset(env_id, kwargs):
    before = _own_sandbox_dirs()
    rows = etpo_gym.prompt_dataset(["skill_dates", "breast_cancer"], [4, 5], env_id, **kwargs)
    assert _own_sandbox_dirs() == before  # no kernel was started
    assert [(r["task"], r["seed"]) for r in rows] == [
        ("skill_dates", 4), ("skill_dates", 5), ("breast_cancer", 4), ("breast_cancer", 5),
    ]  # fmt: skip
    env = gym.make(env_id, task="wine", sandbox="local", **kwargs)
    try:
        obs, info = env.reset(seed=rows[3]["seed"], options={"task": "breast_cancer"})
        assert obs == rows[3]["prompt"] and info["task"] == "breast_cancer"
        obs, info = env.reset(seed=rows[2]["seed"])  # the switch lasts
        assert obs == rows[2]["prompt"] and info["task"] == "breast_cancer"
        assert env.unwrapped.first_observation(4, "skill_dates") == rows[0]["prompt"]
    finally:
        env.close()


def test_prompt_dataset_feeds_datasets_and_rejects_bad_input():
    datasets = pytest.importorskip("datasets")
    rows = etpo_gym.prompt_dataset("wine", range(3), observation_format="chat")
    dataset = datasets.Dataset.from_list(rows)
    assert dataset.column_names == ["prompt", "task", "seed"] and len(dataset) == 3
    assert dataset[0]["prompt"][1]["role"] == "user"
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        etpo_gym.prompt_dataset(["nope"], [0])
    with pytest.raises(ConfigError, match="seeds: -1"):
        etpo_gym.prompt_dataset(["wine"], [-1])


def test_reset_options_are_checked_before_anything_changes():
    env = gym.make("DataSci-v0", task="wine", sandbox="local")
    try:
        with pytest.raises(ConfigError, match=r"\['tsk'\] are not accepted; accepted: \['task'"):
            env.reset(seed=0, options={"tsk": "digits"})
        with pytest.raises(TaskError, match="unknown task 'digitz'; known tasks: breast_cancer"):
            env.reset(seed=0, options={"task": "digitz"})
        with pytest.raises(ConfigError, match="next_seed='1' must be an integer"):
            env.reset(seed=0, options={"next_seed": "1"})
        assert env.unwrapped.task.name == "wine"
    finally:
        env.close()


def test_schema_describes_the_training_rows():
    task = etpo_gym.get_task("skill_missing")
    train_idx, eval_idx = holdout_split(task.data.y, 0, 0.3)
    schema = data_schema(task, train_idx, eval_idx)
    assert schema["rows"] == {"train": len(train_idx), "eval": len(eval_idx)}
    assert schema["input"] == "DataFrame" and schema["target"]["kind"] == "classes"
    x_train, y_train = task.data.rows(train_idx)
    assert [c["name"] for c in schema["columns"]] == list(x_train.columns)
    for column in schema["columns"]:
        assert column["missing"] == int(x_train[column["name"]].isna().sum())
        assert ("min" in column) == (column["kind"] == "numeric")
    share = float((y_train == 1).mean())
    assert schema["target"]["balance"][1] == pytest.approx(share, abs=1e-4)
    regression = data_schema(etpo_gym.get_task("diabetes"), train_idx[:50], eval_idx)
    assert regression["target"]["kind"] == "continuous"


def test_score_batch_gives_the_results_of_env_step():
    codes = [LOGREG_BODY, FOREST_BODY, "raise RuntimeError('no model 7')", LOGREG_BODY, FOREST_BODY]
    tasks = ["breast_cancer", "wine", "breast_cancer", "skill_scale", "breast_cancer"]
    seeds = [3, 4, 3, 5, 3]
    results = etpo_gym.score_batch(codes, tasks, seeds, sandbox="local", workers=2)
    env = gym.make("DataSci-v0", sandbox="local")
    try:
        for code, task, seed, result in zip(codes, tasks, seeds, results, strict=True):
            env.reset(seed=seed, options={"task": task})
            _, reward, terminated, truncated, info = env.step(code)
            assert (result["reward"], result["terminated"], result["truncated"]) == (
                reward,
                terminated,
                truncated,
            )
            for key in ("status", "score", "error", "task", "seed", "infra_error"):
                assert result[key] == info[key], key
    finally:
        env.close()
    assert results[2]["status"] == "error" and "no model 7" in results[2]["error"]
    assert results[0]["score"] != results[4]["score"]  # different models, same split


def test_scoring_pool_checks_its_input():
    with pytest.raises(ConfigError, match="workers=0"):
        etpo_gym.ScoringPool(0, sandbox="local")
    with etpo_gym.ScoringPool(1, sandbox="local") as pool:
        with pytest.raises(ConfigError, match="3 codes, 2 tasks and 3 seeds"):
            pool.score(["a", "b", "c"], ["wine", "wine"], [0])
        assert pool.score([], "wine", 0) == []
    with pytest.raises(ConfigError, match="closed"):
        pool.score(["a"], "wine", 0)
