"""The GRPO baseline (TRL's GRPOTrainer) end to end on a real DataSci task."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

import torch

from etpo_agents.grpo import GrpoConfig, train_grpo
from etpo_agents.starter import starter_path
from etpo_gym.errors import ConfigError


def test_grpo_takes_exactly_its_env_steps_and_moves_the_policy(tmp_path):
    from transformers import AutoModelForCausalLM

    if not (starter_path() / "model.safetensors").is_file():
        pytest.skip("the starter checkpoint is not built")
    cfg = GrpoConfig(
        task="skill_scale,breast_cancer",
        env_steps=4,
        num_generations=2,
        learning_rate=1e-3,
        max_new_tokens=48,
        out=str(tmp_path / "run"),
    )
    run = train_grpo(cfg)
    rollouts = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 4
    assert {r["task"] for r in rollouts} <= {"skill_scale", "breast_cancer"}
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in records) == 2  # two GRPO steps of one group each
    before = AutoModelForCausalLM.from_pretrained(starter_path())
    after = AutoModelForCausalLM.from_pretrained(run / "policy")
    moved = [
        not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)
    ]
    # a group whose two rewards tie has zero advantage; at lr 1e-3 any other group moves π
    rewards = [r["reward"] for r in rollouts]
    if rewards[0] != rewards[1] or rewards[2] != rewards[3]:
        assert any(moved)


def test_grpo_settings_name_the_bad_value():
    with pytest.raises(ConfigError, match=r"env_steps=10.*num_generations=4"):
        GrpoConfig(env_steps=10, num_generations=4)
    with pytest.raises(ConfigError, match="num_generations=1"):
        GrpoConfig(num_generations=1, env_steps=4)
    with pytest.raises(ConfigError, match="learning_rate=0"):
        GrpoConfig(learning_rate=0)
