"""The trainer's vector env: DataSci envs step in processes of their own, side by side."""

from __future__ import annotations

import gymnasium as gym

from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.trainer import make_envs


def test_datasci_envs_are_async_with_real_prompts_and_the_toy_env_is_sync():
    envs = make_envs(EtpoConfig(task="wine", sandbox="local", num_envs=2))
    try:
        assert isinstance(envs, gym.vector.AsyncVectorEnv)
        first, _ = envs.reset(seed=0)
        body = "model = undefined_name\n"
        second, *_ = envs.step((body, body))
    finally:
        envs.close()
    # Read through shared memory, as async does by default: prompts, not padding.
    assert all("def build_model" in prompt for prompt in first)
    assert all("NameError" in prompt for prompt in second)
    toy = make_envs(EtpoConfig(env_id="etpo_agents.etpo.toy:EtpoToy-v0", num_envs=2))
    try:
        assert isinstance(toy, gym.vector.SyncVectorEnv)  # in-process: no process per env
    finally:
        toy.close()
