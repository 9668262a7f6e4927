"""The ETPO agent loop end to end: a known-answer env, DataSci-v0, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.models import EtpoModels
from etpo_agents.etpo.trainer import train
from etpo_gym.errors import ConfigError

TOY = "etpo_agents.etpo.toy:EtpoToy-v0"


def _toy_config(model: Path, out: Path, **kw) -> EtpoConfig:
    settings = dict(
        env_id=TOY,
        model=str(model),
        num_envs=8,
        env_steps_per_update=2,
        max_new_tokens=2,
        actor_lr=3e-3,
        critic_lr=3e-3,
        polyak=0.5,
        beta=0.05,
        td_lambda=0.0,
        critic_steps=2,
        actor_steps=1,
        reward_baseline=0.0,
        checkpoint_every=1000,
        out=str(out),
        lora_r=4,
        lora_alpha=8,
    )
    settings.update(kw)
    return EtpoConfig(**settings)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_agent_loop_learns_the_toy_optimum(tiny_lm_dir, tmp_path):
    """Two-step token game: π must learn to answer `c` to `pick` and `a` to `again`."""
    cfg = _toy_config(tiny_lm_dir, tmp_path / "run", steps=300)
    run = train(cfg, progress=False)
    models = EtpoModels(tiny_lm_dir, seed=0)
    start = {
        w: torch.softmax(models.first_logits("pi", [[i]]), -1)[0]
        for w, i in (("pick", 1), ("again", 2))
    }
    models.load(run / "checkpoint")
    for word, prompt, best in (("pick", 1, 5), ("again", 2, 3)):
        p = torch.softmax(models.first_logits("pi", [[prompt]]), -1)[0]
        assert p[best] > 0.8, (word, p.tolist())
        assert p[best] > start[word][best] + 0.4
    records = _records(run)
    assert [r["update"] for r in records] == list(range(1, 301))
    late = [r["charts/mean_reward"] for r in records[-10:]]
    early = [r["charts/mean_reward"] for r in records[:10]]
    assert sum(late) / 10 > sum(early) / 10 + 0.3
    assert records[-1]["stats/kl"] > 0  # π moved away from ρ
    assert (run / "curve.png").stat().st_size > 0


def test_lora_mode_trains_on_the_toy_env(tiny_lm_dir, tmp_path):
    cfg = _toy_config(tiny_lm_dir, tmp_path / "run", steps=3, mode="lora", checkpoint_every=3)
    run = train(cfg, progress=False)
    records = _records(run)
    assert len(records) == 3
    for key in ("losses/critic", "losses/policy", "stats/kl", "stats/entropy"):
        assert all(r[key] is not None and r[key] == r[key] for r in records), key
    assert (run / "checkpoint" / "policy" / "config.json").is_file()


def test_datasci_smoke_changes_parameters_and_writes_metrics(tmp_path):
    from etpo_agents.starter import starter_path

    if not (starter_path() / "model.safetensors").is_file():
        pytest.skip("the starter checkpoint is not built")
    cfg = EtpoConfig(
        task="breast_cancer",
        model="starter",
        steps=2,
        num_envs=2,
        env_steps_per_update=1,
        max_new_tokens=64,
        max_episode_steps=2,
        checkpoint_every=2,
        out=str(tmp_path / "run"),
    )
    before = EtpoModels("starter")
    run = train(cfg, progress=False)
    after = EtpoModels("starter")
    after.load(run / "checkpoint")
    moved = [
        not torch.equal(a, b) for a, b in zip(before.policy_parameters(), after.policy_parameters())
    ]
    assert any(moved)
    assert any(
        not torch.equal(a, b) for a, b in zip(before.critic_parameters(), after.critic_parameters())
    )
    records = _records(run)
    assert len(records) == 2
    for key in (
        "charts/valid_rate",
        "charts/mean_reward",
        "losses/critic",
        "losses/policy",
        "stats/kl",
        "stats/entropy",
    ):
        assert key in records[0]
    assert all(abs(r["losses/critic"]) < 1e6 for r in records)
    sandboxes = json.loads((run / "sandbox.json").read_text())
    assert sandboxes["requested"] == cfg.sandbox
    (used,) = sandboxes["used"]  # both envs, one backend: what "auto" chose on this machine
    assert used in (
        {"sandbox": "docker", "isolation": "container"},
        {"sandbox": "local", "isolation": "namespaces"},
        {"sandbox": "local", "isolation": "none"},
    )
    saved = EtpoConfig.from_json(run / "config.json")
    assert saved.task == "breast_cancer"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "etpo_gym", "train", *args]


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_duplicates_nothing(tiny_lm_dir, tmp_path):
    run = tmp_path / "run"
    args = [
        "--env-id", TOY, "--model", str(tiny_lm_dir), "--steps", "14", "--num-envs", "4",
        "--max-new-tokens", "2", "--checkpoint-every", "2", "--out", str(run), "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "metrics.jsonl").exists() and len(_records(run)) >= 5:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_records(run))
    assert 5 <= killed_at < 14
    done = subprocess.run(_cli("--resume", str(run), "--quiet"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["update"] for r in _records(run)] == list(range(1, 15))
    state = torch.load(run / "checkpoint" / "trainer.pt", weights_only=False)
    assert state["state"]["update"] == 14
    assert not (run / "checkpoint.tmp").exists()


def test_config_errors_name_the_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"mode='half'.*full, lora"):
        EtpoConfig(mode="half")
    with pytest.raises(ConfigError, match=r"steps=0"):
        EtpoConfig(steps=0)
    with pytest.raises(ConfigError, match=r"polyak=1.5"):
        EtpoConfig(polyak=1.5)
    with pytest.raises(ConfigError, match=r"device='tpu'"):
        EtpoConfig(device="tpu")
    with pytest.raises(ConfigError, match=r"config\.json"):
        train(EtpoConfig(out=str(tmp_path)), resume=tmp_path)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "etpo_gym",
            "train",
            "--optimizer",
            "sgd",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "optimizer='sgd'" in bad.stderr


def test_truncated_steps_bootstrap_and_terminated_ones_do_not():
    """A time-limit truncation is not the end of the task: its transition keeps the bootstrap
    (done False); only a terminated one drops it. Through a real same-step-autoreset vector env."""
    import gymnasium as gym

    from etpo_agents.etpo.trainer import step_outcomes

    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(TOY, max_episode_steps=1), lambda: gym.make(TOY)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    try:
        envs.reset(seed=0)
        first = step_outcomes(*envs.step(["c", "c"]), task="toy")
        second = step_outcomes(*envs.step(["c", "a"]), task="toy")
    finally:
        envs.close()
    truncated, running = first
    assert (truncated.ended, truncated.done, truncated.last_obs) == (True, False, "again")
    assert (running.ended, running.done, running.last_obs) == (False, False, "again")
    terminated = second[1]
    assert (terminated.ended, terminated.done, terminated.reward) == (True, True, 1.0)
    assert second[0].done is False and second[0].ended is True


def test_shape_reward_subtracts_a_running_mean_that_starts_at_the_first_reward():
    from etpo_agents.etpo.trainer import shape_reward

    baseline = None
    shaped = []
    for reward in (1.0, 0.0, 0.5):
        value, baseline = shape_reward(reward, baseline, 0.5)
        shaped.append(value)
    assert shaped == [0.0, -1.0, 0.0]  # baselines 1.0, 1.0 → 0.5, 0.5 → 0.5
    assert baseline == 0.5
    assert shape_reward(0.7, 0.2, 0.0) == (0.7, 0.2)  # rate 0: rewards pass unchanged


@pytest.mark.parametrize("q_param", ["head", "dueling", "paper"])
def test_targets_come_from_the_target_critic(tiny_lm_dir, q_param):
    """With Q ≠ Q̄, the targets an update trains on are Q̄'s soft values, not Q's."""
    from etpo_agents.etpo import soft_bellman as sb
    from etpo_agents.etpo.optim import make_optimizer
    from etpo_agents.etpo.trainer import Transition, etpo_update

    models = EtpoModels(tiny_lm_dir, q_param=q_param, seed=0)
    with torch.no_grad():
        for p in models.critic_parameters():
            p.add_(0.5 * torch.randn_like(p))
    batch = [
        Transition([1], [5, 3, 0], 0.3, [2], False),
        Transition([2], [3, 0], -0.2, [1], True),
    ]
    cfg = EtpoConfig(q_param=q_param, beta=0.1, gamma=0.9, critic_steps=1, td_lambda=0.0)
    prompts, actions = [t.prompt_ids for t in batch], [t.action_ids for t in batch]
    mask = torch.tensor([[True, True, True], [True, True, False]])

    def expected_target_mean(role: str) -> float:
        q, v = models.action_outputs(role, prompts, actions)
        pi, rho = (models.action_logits(r, prompts, actions) for r in ("pi", "rho"))
        nq, nv = models.first_outputs(role, [t.next_prompt_ids for t in batch])
        npi, nrho = (models.first_logits(r, [[2], [1]])[:, None] for r in ("pi", "rho"))
        if q_param == "dueling":
            nxt = sb.dueling_soft_values(q[:, 1:], v[:, 1:], pi[:, 1:], 0.1)
            obs = sb.dueling_soft_values(nq[:, None], nv[:, None], npi, 0.1)[:, 0]
        else:
            nxt = sb.soft_values(q[:, 1:], pi[:, 1:], rho[:, 1:], 0.1)
            obs = sb.soft_values(nq[:, None], npi, nrho, 0.1)[:, 0]
        y = sb.soft_bellman_targets(
            nxt, obs, torch.tensor([0.3, -0.2]), torch.tensor([0.0, 1.0]), mask, 0.9
        )
        return float(sb.masked_mean(y, mask))

    from_q_bar, from_q = expected_target_mean("q_target"), expected_target_mean("q")
    assert abs(from_q_bar - from_q) > 1e-3  # the test can tell them apart
    stats = etpo_update(
        models,
        batch,
        cfg,
        make_optimizer(models.policy_parameters(), "adamw", 1e-4),
        make_optimizer(models.critic_parameters(), "adamw", 1e-4),
    )
    assert stats["stats/target_mean"] == pytest.approx(from_q_bar, abs=1e-5)


@pytest.mark.parametrize("zero", [False, True])
def test_zero_rewards_learn_from_nothing_but_log_the_real_rewards(tiny_lm_dir, tmp_path, zero):
    cfg = _toy_config(
        tiny_lm_dir, tmp_path / "run", steps=1, zero_rewards=zero, td_lambda=1.0, beta=0.1
    )
    record = _records(train(cfg, progress=False))[0]
    assert record["charts/mean_reward"] > 0  # the toy pays 1 for some of 16 random answers
    # Q̄ ≡ 0 and π = ρ at the start: the targets are the (shaped) rewards alone
    if zero:
        assert record["stats/target_mean"] == 0.0
    else:
        assert record["stats/target_mean"] > 0


def test_fp16_compute_trains_with_a_gradient_scaler(tiny_lm_dir, tmp_path):
    """fp16 autocast (on CPU where torch allows it): the scaler scales, unscales before
    clipping and steps; parameters move, losses stay finite, its state is checkpointed."""
    cfg = _toy_config(tiny_lm_dir, tmp_path / "run", steps=2, dtype="float16", checkpoint_every=2)
    run = train(cfg, progress=False)
    records = _records(run)
    assert all(torch.isfinite(torch.tensor(r["losses/critic"])) for r in records)
    state = torch.load(run / "checkpoint" / "trainer.pt", weights_only=False)
    assert [s["scale"] for s in state["scalers"]] and all(
        0 < s["scale"] <= 65536.0 for s in state["scalers"]
    )
    before = EtpoModels(tiny_lm_dir, seed=0)
    after = EtpoModels(tiny_lm_dir, seed=0)
    after.load(run / "checkpoint")
    assert any(
        not torch.equal(a, b) for a, b in zip(before.policy_parameters(), after.policy_parameters())
    )
