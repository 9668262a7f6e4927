"""Paired scoring on fixed episodes (real local kernels) and the multi-task env."""

from __future__ import annotations

import math

import pytest

from etpo_agents.etpo.evaluation import (
    EVALUATION_SEED,
    EpisodeScorer,
    episode_seeds,
    paired,
)
from etpo_agents.etpo.multitask import ENV_ID, MultiTaskEnv
from etpo_gym.errors import ConfigError

GOOD = (
    "    from sklearn.linear_model import LogisticRegression\n"
    "    model = LogisticRegression(max_iter=200).fit(x_train, y_train)"
)
BAD = "    model = None"


def test_scores_are_memoised_per_episode_and_body_and_survive_a_restart(tmp_path):
    cache = tmp_path / "scores.jsonl"
    seeds = episode_seeds("evaluation", 2)
    assert seeds == [EVALUATION_SEED, EVALUATION_SEED + 1]
    with EpisodeScorer(cache=cache) as scorer:
        first = scorer.score("breast_cancer", seeds + seeds[:1], [GOOD, GOOD, BAD])
        assert scorer.executed == 3
        again = scorer.score("breast_cancer", seeds, [GOOD, GOOD])
        assert scorer.executed == 3  # nothing ran twice
    assert [r["status"] for r in first] == ["ok", "ok", "error"]
    assert first[2]["reward"] == -1.0
    assert 0.9 < first[0]["reward"] <= 1.0 and first[0]["reward"] != first[1]["reward"]
    assert again == first[:2]
    with EpisodeScorer(cache=cache) as scorer:
        assert scorer.score("breast_cancer", seeds, [GOOD, GOOD]) == first[:2]
        assert scorer.executed == 0
    with pytest.raises(ConfigError, match="2 seeds for 1 bodies"):
        EpisodeScorer().score("breast_cancer", seeds, [GOOD])
    with pytest.raises(ConfigError, match="split='test'"):
        episode_seeds("test", 3)


def test_paired_difference_and_its_standard_error():
    result = paired([1.0, 2.0, None, 4.0], [0.5, 1.0, 3.0, 2.0])
    diffs = [0.5, 1.0, 2.0]  # the unscored episode is left out of both
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert result.episodes == 3
    assert result.diff == pytest.approx(mean)
    assert result.se == pytest.approx(sd / math.sqrt(3))
    assert result.z == pytest.approx(mean / (sd / math.sqrt(3)))
    assert paired([1.0, 1.0], [0.0, 0.0]).z == math.inf  # same difference on every episode
    with pytest.raises(ConfigError, match="differ in length"):
        paired([1.0], [1.0, 2.0])


def test_multitask_env_draws_tasks_reproducibly_and_steps_the_drawn_one():
    import gymnasium as gym

    def draws(env: gym.Env) -> list[tuple[str, int]]:
        out = []
        for k in range(4):
            _, info = env.reset(seed=11 if k == 0 else None)
            out.append((info["task"], info["seed"]))
        return out

    kwargs = dict(tasks="skill_scale,breast_cancer", sandbox="local", max_steps=1)
    env = gym.make(ENV_ID, **kwargs)
    try:
        first = draws(env)
        _, reward, terminated, _, info = env.step(GOOD)
        assert info["task"] == first[-1][0] and terminated and reward > 0.5
    finally:
        env.close()
        env.close()  # harmless
    other = gym.make(ENV_ID, **kwargs)
    try:
        assert draws(other) == first
    finally:
        other.close()
    assert {task for task, _ in first} <= {"skill_scale", "breast_cancer"}
    with pytest.raises(ConfigError, match="empty"):
        MultiTaskEnv([])
