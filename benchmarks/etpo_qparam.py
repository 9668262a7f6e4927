"""Where each Q parametrisation starts, on the starter policy, before any reward; and what bf16
does to polyak averaging of the target critic.

For bodies the starter samples (temperature 0.8) on three skill tasks' prompts: ρ's per-token
entropy, and for each ``q_param`` the entropy of the soft-greedy policy ``π* ∝ ρ·exp(Q/β)``, the
mass on its most likely token, KL(π*‖ρ), and the range of Q (the paper's Q is the logits).
Then 200 polyak steps (τ = 0.995) of a copy of the critic's weights toward the weights plus
noise (gaps of 1 % and 0.1 % of each tensor's mean magnitude): the share of the gap left with
the target in float32 and in bf16, against exact arithmetic (0.995^200).

    python benchmarks/etpo_qparam.py [--beta 0.01] [--samples 8]
"""

from __future__ import annotations

import argparse

import torch

from etpo_agents.etpo import soft_bellman as sb
from etpo_agents.etpo.evaluation import EpisodeScorer
from etpo_agents.etpo.models import Q_PARAMS, EtpoModels

TASKS = ("skill_interactions", "skill_scale", "skill_dates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--samples", type=int, default=8, help="bodies per task")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with EpisodeScorer() as scorer:
        prompts = [scorer.prompt(t) for t in TASKS] * args.samples
    print(
        f"{len(prompts)} starter samples (temperature 0.8) on {', '.join(TASKS)}; β = {args.beta}"
    )
    for q_param in Q_PARAMS:
        m = EtpoModels("starter", q_param=q_param)
        samples = m.generate(prompts, temperature=0.8, max_new_tokens=160, seed=0)
        ids, acts = [s[0] for s in samples], [s[1] or [m.tokenizer.eos_token_id] for s in samples]
        width = max(len(a) for a in acts)
        mask = torch.tensor([[j < len(a) for j in range(width)] for a in acts])
        rho = m.action_logits("rho", ids, acts)[:, :width]
        logits, values = m.action_outputs("q", ids, acts)
        logits = logits[:, :width]
        q = logits if values is None else sb.dueling_q(logits, values[:, :width], rho, args.beta)
        star = torch.log_softmax(torch.log_softmax(rho.float(), -1) + q.float() / args.beta, -1)
        if q_param == Q_PARAMS[0]:
            print(f"  ρ: entropy per token {float(sb.masked_mean(sb.entropy(rho), mask)):.3f}")
        entropy = sb.masked_mean(-(star.exp() * star).sum(-1), mask)
        top = sb.masked_mean(star.exp().max(-1).values, mask)
        kl = sb.masked_mean(sb.soft_greedy_kl(q, rho, args.beta), mask)
        taken = q.gather(-1, torch.tensor([a + [0] * (width - len(a)) for a in acts])[..., None])
        taken = taken[..., 0][mask]
        print(f"  π* of q_param={q_param}: entropy {float(entropy):.4f}, mass on its argmax "
              f"{float(top):.1%}, KL(π*‖ρ) {float(kl):.3f}; Q of the taken tokens "
              f"{float(taken.min()):+.2f} … {float(taken.max()):+.2f}")  # fmt: skip

    weights = [p.detach().clone() for p in EtpoModels("starter").critic_parameters()]
    print("polyak τ = 0.995, 200 steps: share of the gap left (exact 0.995^200 = "
          f"{0.995**200:.1%})")  # fmt: skip
    for scale in (1e-2, 1e-3):
        g = torch.Generator().manual_seed(0)
        goal = [w + scale * w.abs().mean() * torch.randn(w.shape, generator=g) for w in weights]
        gap0 = sum(float((s - w).abs().sum()) for s, w in zip(goal, weights))
        for dtype in (torch.float32, torch.bfloat16):
            target = [w.to(dtype) for w in weights]
            for _ in range(200):
                sb.polyak_update(target, goal, 0.995)
            gap = sum(float((s - t.float()).abs().sum()) for s, t in zip(goal, target))
            print(f"  gap {scale:.1%} of each tensor's mean |w|, target in "
                  f"{str(dtype).split('.')[-1]}: {gap / gap0:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
