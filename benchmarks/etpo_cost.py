"""What an ETPO update costs: seconds per stage, full copies vs LoRA, side by side in one run;
and the memory each mode needs for a 7B Llama-shaped model (computed, not measured).

Stages of one update on a batch of sampled actions: generate (π samples), forwards (Q̄, π, ρ
over the actions and the next prompts), targets (soft values + soft Bellman targets), critic
(forward + backward), actor (forward + backward), optimizer steps + polyak.

    python benchmarks/etpo_cost.py [--model starter|PATH] [--batch 8] [--reps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import torch

import etpo_gym  # noqa: F401 - registers the envs
from etpo_agents.etpo import soft_bellman as sb
from etpo_agents.etpo.models import EtpoModels
from etpo_agents.etpo.optim import make_optimizer


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
    beta: float = 0.01,
) -> dict[str, float]:
    """Seconds per stage of one update, and the number of action tokens it processed."""
    t: dict[str, float] = {}
    clock = time.perf_counter()
    samples = models.generate([prompt] * batch, max_new_tokens=128, seed=0)
    t["generate"] = time.perf_counter() - clock
    prompts = [s[0] for s in samples]
    actions = [s[1] or [models.tokenizer.eos_token_id] for s in samples]
    width = max(len(a) for a in actions)
    mask = torch.tensor([[j < len(a) for j in range(width)] for a in actions], device=models.device)
    taken = torch.tensor([a + [0] * (width - len(a)) for a in actions], device=models.device)
    rewards = torch.rand(batch, device=models.device)
    dones = torch.ones(batch, device=models.device)

    clock = time.perf_counter()
    with torch.no_grad():
        q_bar = models.action_logits("q_target", prompts, actions)
        pi = models.action_logits("pi", prompts, actions)
        rho = models.action_logits("rho", prompts, actions)
        nxt = [models.first_logits(r, prompts)[:, None] for r in ("q_target", "pi", "rho")]
    t["forwards"] = time.perf_counter() - clock
    clock = time.perf_counter()
    next_values = sb.soft_values(q_bar[:, 1:], pi[:, 1:], rho[:, 1:], beta)
    next_obs = sb.soft_values(*nxt, beta)[:, 0]
    targets = sb.soft_bellman_targets(next_values, next_obs, rewards, dones, mask, 0.99)
    t["targets"] = time.perf_counter() - clock

    critic_opt, actor_opt = opts
    clock = time.perf_counter()
    loss_q = sb.critic_loss(
        models.action_logits("q", prompts, actions, grad=True)[:, :width], taken, targets, mask
    )
    critic_opt.zero_grad()
    loss_q.backward()
    t["critic fwd+bwd"] = time.perf_counter() - clock
    clock = time.perf_counter()
    with torch.no_grad():
        q_now = models.action_logits("q", prompts, actions)[:, :width]
    loss_pi = sb.policy_loss(
        models.action_logits("pi", prompts, actions, grad=True)[:, :width],
        rho[:, :width],
        q_now,
        mask,
        beta,
    )
    actor_opt.zero_grad()
    loss_pi.backward()
    t["actor fwd+bwd"] = time.perf_counter() - clock
    clock = time.perf_counter()
    critic_opt.step()
    actor_opt.step()
    models.polyak(0.995)
    t["optimizer+polyak"] = time.perf_counter() - clock
    t["tokens"] = float(mask.sum())
    return t


def memory_7b(lora_r: int = 16) -> dict[str, dict[str, float]]:
    """GiB per component for Llama-2-7B shapes (32 layers, hidden 4096, MLP 11008, vocab 32000)."""
    layers, hidden, mlp, vocab = 32, 4096, 11008, 32000
    params = 6.74e9
    lora = layers * lora_r * (4 * (hidden + hidden) + 3 * (hidden + mlp))  # per adapter
    head = vocab * hidden
    gib = 1024**3
    fp32_train = 16  # fp32 weight + grad + AdamW m, v
    # activations of one forward+backward, bf16, B=8 sequences of 512 tokens, no checkpointing
    batch, seq, heads = 8, 512, 32
    activations = batch * seq * layers * (34 * hidden + 5 * heads * seq) / gib
    logits = batch * seq * vocab * 4 / gib
    full = {
        "π (fp32 master + grad + AdamW)": params * fp32_train / gib,
        "Q (fp32 master + grad + AdamW)": params * fp32_train / gib,
        "Q̄ (bf16, frozen)": params * 2 / gib,
        "ρ (bf16, frozen)": params * 2 / gib,
        "activations (B=8×512, bf16)": activations,
        "one logits tensor (fp32)": logits,
    }
    paper = {
        "π, Q, Q̄, ρ fp16 + grads of π, Q (fp16) + Lion state": params
        * (4 * 2 + 2 * 2 + 2 * 2)
        / gib
    }
    lora_mode = {
        "base (bf16, frozen; ρ = base)": params * 2 / gib,
        f"π, Q adapters r={lora_r} (fp32 + grad + AdamW)": 2 * lora * fp32_train / gib,
        "Q̄ adapter (fp32)": lora * 4 / gib,
        "Q head over the vocab (fp32 + grad + AdamW)": head * fp32_train / gib,
        "Q̄ head (fp32)": head * 4 / gib,
        "activations (B=8×512, bf16)": activations,
        "one logits tensor (fp32)": logits,
    }
    return {"full (fp32 master)": full, "paper (all fp16)": paper, "lora": lora_mode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    prompt = _prompt()
    rows = {}
    for mode in ("full", "lora"):
        models = EtpoModels(args.model, mode=mode, device=args.device, lora_r=16, lora_alpha=32)
        opts = (
            make_optimizer(models.critic_parameters(), "adamw", 1e-5),
            make_optimizer(models.policy_parameters(), "adamw", 1e-5, eps=1e-5),
        )
        time_update(models, opts, prompt, args.batch)  # warm-up
        runs = [time_update(models, opts, prompt, args.batch) for _ in range(args.reps)]
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
    print("\nmemory for a 7B Llama-shaped model (computed, GiB):")
    for mode, parts in memory_7b().items():
        print(f"  {mode}: total {sum(parts.values()):.1f}")
        for name, value in parts.items():
            print(f"    {name:<55}{value:>8.2f}")


if __name__ == "__main__":
    main()
