"""Language-model agents on the leaderboard: zero-shot starter, and a trained policy by spec."""

from __future__ import annotations

import gymnasium as gym
import pytest

from etpo_agents.starter import starter_path
from etpo_gym.agent import run_episode
from etpo_gym.errors import ConfigError
from etpo_gym.leaderboard import load_agent


@pytest.fixture(scope="module")
def starter_built() -> None:
    if not (starter_path() / "model.safetensors").is_file():
        pytest.skip("the starter checkpoint is not built")


def test_lm_agent_writes_code_that_the_env_runs(starter_built):
    agent = load_agent("lm")
    assert agent.name == "lm"
    env = gym.make("DataSci-v0", task="breast_cancer", sandbox="local", max_steps=2)
    try:
        first = run_episode(env, agent, seed=3)
        again = run_episode(env, load_agent("lm"), seed=3)
    finally:
        env.close()
    assert 1 <= first.steps <= 2 and first.statuses[0]
    assert first.rewards == again.rewards  # seeded by the episode: reproducible
    assert first.success == (first.statuses[-1] == "ok")


def test_etpo_spec_loads_a_policy_directory(starter_built, tmp_path):
    agent = load_agent(f"etpo:{starter_path()}")  # any HF dir, or a run/checkpoint with policy/
    code = agent.act("def build_model(x_train, y_train):\n<FILL_ME>\n    return model\n", {})
    assert isinstance(code, str) and code.strip()
    with pytest.raises(ConfigError, match="holds no policy"):
        load_agent(f"etpo:{tmp_path}")
