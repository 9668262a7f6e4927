"""The small sweep that chose ETPO's β, λ and learning rates and GRPO's learning rate.

Each setting trains once (seed 100, so no seed of the learning benchmark is reused) on the
learning benchmark's training tasks for the same number of env steps, and is scored on the
*validation* episodes of those tasks, decoded greedily as the benchmark decodes trained
policies. Evaluation episodes and held-out tasks play no part.
Printed: the mean validation reward over the tasks per setting, beside the untrained starter's.

    python benchmarks/etpo_sweep.py [--only etpo-b0.1-l1,grpo-1e-4] [--out runs/sweep]

Resumable like ``etpo_learning.py`` (finished runs and executed bodies are reused).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from etpo_learning import TRAIN, etpo_config, score

from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.evaluation import EpisodeScorer
from etpo_agents.etpo.trainer import train
from etpo_agents.starter import starter_path

SEED = 100
#: name → EtpoConfig overrides or {"grpo_lr": lr}. A first try of the dueling Q (β 0.1, λ 1,
#: lr 3e-4) collapsed within 8 updates (KL(π‖ρ) 7, every sample an error): it is kept as an
#: option, not swept further.
_ETPO = {"q_param": "head", "td_lambda": 1.0, "critic_steps": 4, "actor_steps": 4, "polyak": 0.9}
SETTINGS: dict[str, dict[str, Any]] = {
    "head-b0.1-lr3e-4": {**_ETPO, "beta": 0.1, "actor_lr": 3e-4, "critic_lr": 3e-4},
    "head-b0.1-lr1e-3": {**_ETPO, "beta": 0.1, "actor_lr": 1e-3, "critic_lr": 1e-3},
    "grpo-1e-4": {"grpo_lr": 1e-4},
    "grpo-1e-3": {"grpo_lr": 1e-3},
    "head-b0.03-lr3e-4": {**_ETPO, "beta": 0.03, "actor_lr": 3e-4, "critic_lr": 3e-4},
    "head-b0.1-lr3e-4-onestep": {
        **_ETPO,
        "beta": 0.1,
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "td_lambda": 0.0,
    },
    "dueling-b0.1-lr3e-4": {
        **_ETPO,
        "q_param": "dueling",
        "beta": 0.1,
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default=TRAIN)
    parser.add_argument("--only", default="", help="comma-separated setting names")
    parser.add_argument("--env-steps", type=int, default=96)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--val-episodes", type=int, default=8)
    parser.add_argument("--out", default="runs/sweep")
    args = parser.parse_args()
    torch.set_num_threads(1)  # see etpo_learning.py
    names = [n for n in args.only.split(",") if n] or list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"--only: unknown {unknown}; accepted: {', '.join(SETTINGS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in args.train.split(",") if t]
    rows = {}
    with EpisodeScorer(cache=out / "scores.jsonl") as scorer:
        rows["starter (untrained)"] = _row(_validate(scorer, starter_path(), tasks, args), 0.0)
        for name in names:
            policy, seconds = _train(name, args, out / name)
            rows[name] = _row(_validate(scorer, policy, tasks, args), seconds)
            rows[name].update(_training_end(out / name))
            print(f"{name}: {rows[name]}", flush=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\ngreedy validation reward; KL(π‖ρ) and rollout reward over the last 3 updates")
    print("| setting | " + " | ".join(tasks) + " | mean | KL end | rollouts end | train min |")
    print("|---|" + "---:|" * (len(tasks) + 4))
    for name, row in rows.items():
        cells = [f"{row['tasks'][t]:.3f}" for t in tasks] + [f"{row['mean']:.3f}"]
        cells += [
            f"{row[k]:.3f}" if k in row else "–" for k in ("final_kl", "final_rollout_reward")
        ]
        print(f"| {name} | " + " | ".join(cells) + f" | {row['train_min']:.1f} |")


def _validate(
    scorer: EpisodeScorer, policy: Path, tasks: list[str], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Greedy rewards on the validation episodes, per task (as the benchmark decodes)."""
    return {t: score(scorer, policy, t, "validation", args.val_episodes, 0.0, SEED) for t in tasks}


def _training_end(run: Path) -> dict[str, Any]:
    """KL(π‖ρ) and the rollouts' mean reward over the last 3 updates (ETPO runs)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines()][-3:]
    kl = [r["stats/kl"] for r in records if r.get("stats/kl") is not None]
    reward = [r["charts/mean_reward"] for r in records if r.get("charts/mean_reward") is not None]
    return {"final_kl": float(np.mean(kl)), "final_rollout_reward": float(np.mean(reward))}


def _row(result: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    means = {t: r["mean"] for t, r in result.items()}
    return {
        "tasks": means,
        "distinct_bodies": {t: r["distinct_bodies"] for t, r in result.items()},
        "mean": float(np.mean(list(means.values()))),
        "train_min": seconds / 60,
    }


def _train(name: str, args: argparse.Namespace, out: Path) -> tuple[Path, float]:
    done = out / "done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        return Path(info["policy"]), float(info["train_s"])
    shutil.rmtree(out, ignore_errors=True)
    overrides = dict(SETTINGS[name])
    started = time.perf_counter()
    if "grpo_lr" in overrides:
        from etpo_agents.grpo import GrpoConfig, train_grpo

        cfg = GrpoConfig(
            task=args.train,
            seed=SEED,
            env_steps=args.env_steps,
            learning_rate=overrides["grpo_lr"],
            out=str(out),
        )
        policy = train_grpo(cfg) / "policy"
    else:
        base = etpo_config("etpo", SEED, args, out)
        cfg = EtpoConfig(**{**base.__dict__, **overrides})
        policy = train(cfg, progress=False) / "checkpoint" / "policy"
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"policy": str(policy), "train_s": seconds}) + "\n")
    return policy, seconds


if __name__ == "__main__":
    main()
