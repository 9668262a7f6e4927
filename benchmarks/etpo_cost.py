"""What an ETPO update costs: seconds per stage, full copies vs LoRA, side by side in one run.

Stages of one update (the trainer's ``etpo_update`` with the default ``EtpoConfig``) on a batch
of sampled actions: generate (π samples), targets (Q̄, π, ρ forwards over the actions and the
next prompts, soft values, λ-returns), the critic steps, the actor steps, polyak. The memory a
7B model needs is in ``benchmarks/etpo_memory.py``.

    python benchmarks/etpo_cost.py [--model starter|PATH] [--batch 8] [--reps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import torch

import etpo_gym  # noqa: F401 - registers the envs
from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.models import EtpoModels
from etpo_agents.etpo.optim import make_optimizer
from etpo_agents.etpo.trainer import Transition, etpo_update


def _prompt(task: str = "skill_interactions") -> str:
    env = gym.make("DataSci-v0", task=task, sandbox="local")
    try:
        return env.reset(seed=0)[0]
    finally:
        env.close()


def time_update(
    models: EtpoModels,
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    prompt: str,
    batch: int,
    cfg: EtpoConfig,
) -> dict[str, float]:
    """Seconds per stage of one update (the trainer's own ``etpo_update``), and its tokens."""
    clock = time.perf_counter()
    samples = models.generate([prompt] * batch, max_new_tokens=128, seed=0)
    t = {"generate": time.perf_counter() - clock}
    transitions = [
        Transition(p, a or [models.tokenizer.eos_token_id], float(i % 3) - 1.0, p, True)
        for i, (p, a, _text) in enumerate(samples)
    ]
    critic_opt, actor_opt = opts
    clock = time.perf_counter()
    stats = etpo_update(models, transitions, cfg, actor_opt, critic_opt)
    total = time.perf_counter() - clock
    t["targets"] = stats["time/targets"]
    t["critic steps"] = stats["time/critic"]
    t["actor steps"] = stats["time/actor"]
    t["polyak + stats"] = total - stats["time/targets"] - stats["time/critic"] - stats["time/actor"]
    t["tokens"] = stats["stats/action_tokens"] * batch
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    prompt = _prompt()
    rows = {}
    cfg = EtpoConfig()
    for mode in ("full", "lora"):
        models = EtpoModels(args.model, mode=mode, device=args.device, lora_r=16, lora_alpha=32)
        opts = (
            make_optimizer(models.critic_parameters(), "adamw", 1e-5),
            make_optimizer(models.policy_parameters(), "adamw", 1e-5, eps=1e-5),
        )
        time_update(models, opts, prompt, args.batch, cfg)  # warm-up
        runs = [time_update(models, opts, prompt, args.batch, cfg) for _ in range(args.reps)]
        rows[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows[mode]["trainable params"] = sum(
            p.numel() for p in models.policy_parameters() + models.critic_parameters()
        )
    stages = [k for k in rows["full"] if k not in ("tokens", "trainable params")]
    print(
        f"one update, batch {args.batch}, model {args.model}, device {args.device}, median of {args.reps}"
    )
    print(f"{'stage':<20}{'full (s)':>12}{'lora (s)':>12}{'lora/full':>11}")
    for k in stages:
        print(
            f"{k:<20}{rows['full'][k]:>12.4f}{rows['lora'][k]:>12.4f}{rows['lora'][k] / rows['full'][k]:>11.2f}"
        )
    for mode in ("full", "lora"):
        learn = sum(rows[mode][k] for k in stages if k != "generate")
        print(f"{mode}: {rows[mode]['tokens'] / learn:,.0f} action tokens/s in learning, "
              f"{rows[mode]['tokens'] / rows[mode]['generate']:,.0f} tokens/s generating; "
              f"{rows[mode]['trainable params']:,.0f} trainable parameters")  # fmt: skip
    print("memory for a 7B model: benchmarks/etpo_memory.py")


if __name__ == "__main__":
    main()
