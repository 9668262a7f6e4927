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


def test_temperature_zero_decodes_greedily(tiny_lm_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from etpo_agents.etpo.agent import EtpoAgent
    from etpo_agents.starter.sample import sample_bodies

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    bodies = sample_bodies(model, tokenizer, "pick", n=3, temperature=0, max_new_tokens=4, seed=1)
    ids = tokenizer("pick", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=4,
            eos_token_id=0, pad_token_id=0,
        )  # fmt: skip
    row = out[0, ids.shape[1] :].tolist()
    expected = tokenizer.decode(row[: row.index(0)] if 0 in row else row, skip_special_tokens=True)
    assert bodies == [expected] * 3
    agent = EtpoAgent.from_checkpoint(tiny_lm_dir, temperature=0, max_new_tokens=4)
    assert agent.sample("pick", 2, seed=5) == [expected] * 2
    with pytest.raises(ConfigError, match="temperature=-1"):
        sample_bodies(model, tokenizer, "pick", temperature=-1)
