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
