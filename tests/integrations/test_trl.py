"""etpo_gym.integrations.trl: a light import, the reward function, the tool environments, and the
runnable example training the shipped starter for two GRPO steps with real kernels."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import etpo_gym
from etpo_gym.integrations.trl import EnvReward, NotebookEnvironment, environment_factory

REPO = Path(__file__).resolve().parents[2]
LOGREG_BODY = """\
from sklearn.linear_model import LogisticRegression
model = LogisticRegression(max_iter=5000).fit(x_train, y_train)
"""


def test_importing_the_integration_imports_neither_trl_nor_torch():
    code = (
        "import sys, etpo_gym.integrations.trl\n"
        "print(sorted(m for m in ('torch', 'trl', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_env_reward_scores_plain_and_chat_completions():
    rows = etpo_gym.prompt_dataset("wine", [0, 1])
    reward = EnvReward(workers=1, sandbox="local", timeout=30.0)
    try:
        values = reward(
            prompts=[row["prompt"] for row in rows],
            completions=[LOGREG_BODY, [{"role": "assistant", "content": "raise ValueError"}]],
            task=["wine", "wine"],
            seed=[0, 1],
        )
    finally:
        reward.close()
    assert values[0] > 0.9 and values[1] == -1.0
    assert reward.last[1]["status"] == "error" and "ValueError" in reward.last[1]["error"]


def test_environment_factory_gives_tool_environments():
    from transformers.utils import get_json_schema

    make = environment_factory("DataSciNotebook-v0", sandbox="local", timeout=30.0)
    with make() as env:
        assert isinstance(env, NotebookEnvironment)
        assert env.reset(task="wine", seed=0, prompt="ignored") is None
        assert env.run_cell("x_train.shape") == "(125, 13)\n"
        assert "Submission scored: roc_auc" in env.submit(LOGREG_BODY)
        assert env.get_reward() > 0.9 and env.submit("x") == "The episode is over."
        # TRL turns the public methods into tools from their type hints and docstrings
        schema = get_json_schema(env.run_cell)["function"]
        assert schema["name"] == "run_cell" and schema["parameters"]["required"] == ["code"]
    with environment_factory("DataSci-v0", sandbox="local")() as env:
        assert not hasattr(env, "run_cell") and hasattr(env, "submit")


@pytest.mark.slow
def test_the_example_trains_the_starter_two_steps_with_multi_step_rollouts(tmp_path):
    pytest.importorskip("trl")
    import torch
    from transformers import AutoModelForCausalLM

    from etpo_agents.starter import starter_path

    main = runpy.run_path(str(REPO / "examples" / "trl_grpo.py"))["main"]
    run = main(
        ["--mode", "rollout", "--steps", "2", "--generations", "4", "--max-tokens", "96",
         "--tasks", "skill_scale,breast_cancer", "--seeds", "2", "--out", str(tmp_path / "run")]
    )  # fmt: skip
    steps = [record for record in run["log"] if "loss" in record]
    assert len(steps) == 2 and len(run["episodes"]) == 8
    assert all(1 <= len(e["statuses"]) <= 2 for e in run["episodes"])
    assert any(float(record["reward_std"]) > 0 for record in steps)
    before = AutoModelForCausalLM.from_pretrained(starter_path())
    after = AutoModelForCausalLM.from_pretrained(run["policy"])
    moved = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
    assert any(moved)


@pytest.mark.slow
def test_the_example_trains_with_one_step_env_rewards(tmp_path):
    pytest.importorskip("trl")
    main = runpy.run_path(str(REPO / "examples" / "trl_grpo.py"))["main"]
    run = main(
        ["--mode", "reward", "--steps", "1", "--generations", "4", "--max-tokens", "96",
         "--tasks", "wine", "--seeds", "1", "--out", str(tmp_path / "run")]
    )  # fmt: skip
    (step,) = [record for record in run["log"] if "loss" in record]
    # the completions were scored by EnvReward (TRL logs each reward function by its __name__)
    assert -1.0 <= float(step["rewards/etpo_gym_env_reward/mean"]) <= 1.0
    assert (run["policy"] / "model.safetensors").is_file()


def test_a_rollout_appends_env_feedback_masked_out_and_tries_again():
    import types

    import torch

    from etpo_agents.rollout import Rollout
    from etpo_agents.starter import load_starter

    model, tokenizer = load_starter()
    model.train()
    trainer = types.SimpleNamespace(
        model=model,
        processing_class=tokenizer,
        args=types.SimpleNamespace(temperature=0.8, top_k=50, top_p=1.0, num_generations=2),
        accelerator=types.SimpleNamespace(unwrap_model=lambda m: m),
    )
    rows = etpo_gym.prompt_dataset("wine", [0, 1])
    # 12 tokens cannot hold a body: every attempt fails, so each episode gets feedback
    rollout = Rollout(rows, max_turns=2, max_turn_tokens=12, sandbox="local", timeout=30.0)
    try:
        torch.manual_seed(0)
        out = rollout([rows[0]["prompt"]] * 2 + [rows[1]["prompt"]], trainer)
    finally:
        rollout.close()
    assert model.training  # generation ran in eval mode, and the mode is restored
    assert [(e["task"], e["seed"]) for e in rollout.episodes] == [("wine", 0)] * 2 + [("wine", 1)]
    for i, episode in enumerate(rollout.episodes):
        mask, ids, logprobs = out["env_mask"][i], out["completion_ids"][i], out["logprobs"][i]
        assert episode["statuses"] == ["error", "error"]
        assert len(mask) == len(ids) == len(logprobs)
        first_env, last_model = mask.index(0), len(mask) - 1 - mask[::-1].index(1)
        assert 0 < first_env < last_model  # model tokens, feedback tokens, model tokens
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask) if m == 0)
        assert all(lp <= 0.0 for lp in logprobs) and any(lp < 0.0 for lp in logprobs)
        feedback = tokenizer.decode([t for t, m in zip(ids, mask) if m == 0])
        assert "Fix the problem" in feedback and "Error" in feedback and "Task:" not in feedback
        assert out["env_return"][i] == -3.0  # two failed steps, then no scored answer
        assert out["prompt_ids"][i] == tokenizer(rows[0]["prompt"])["input_ids"]
