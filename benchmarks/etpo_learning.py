"""Does ETPO improve the starter policy? Train on skill tasks, evaluate on held-out episodes.

For each task: the starter policy (ρ, untrained) is scored on ``--eval-episodes`` fresh
episodes (one attempt each: the task metric, or −1 on an error); then, for each seed, ETPO
trains from the starter for ``--steps`` updates and π is scored on the same episodes. Printed:
mean ± SEM of each, the gain in units of its standard error, KL(π‖ρ) at the end, wall time.
Writes ``OUT/learning.json`` and ``OUT/learning.png`` (reward curves per task and seed).

    python benchmarks/etpo_learning.py [--tasks skill_interactions,skill_scale,skill_categorical]
        [--seeds 3] [--steps 25] [--eval-episodes 128] [--num-envs 4] [--out runs/learning]

The bar: a gain of more than 3 standard errors on at least one task within 10 minutes of CPU per
run. On 2 cores the defaults take about 4 minutes of training and 3 of evaluation per (task,
seed), 75 minutes in all; ``benchmarks/etpo_choices.py OUT/*`` then shows which models π writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.trainer import evaluate, train
from etpo_agents.starter import starter_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="skill_interactions,skill_scale,skill_categorical")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--eval-episodes", type=int, default=128)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--out", default="runs/learning")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    eval_seed = 900_000  # episodes no training run sees
    results: dict[str, dict] = {}
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        started = time.perf_counter()
        base = evaluate(starter_path(), task, args.eval_episodes, seed=eval_seed)
        base["wall_s"] = time.perf_counter() - started
        print(f"{task}: starter {base['mean_reward']:.4f} ± {base['sem']:.4f} "
              f"(valid {base['valid_rate']:.2f}, {base['wall_s']:.0f} s)", flush=True)  # fmt: skip
        runs = []
        for seed in range(args.seeds):
            cfg = EtpoConfig(
                task=task,
                seed=seed,
                steps=args.steps,
                num_envs=args.num_envs,
                checkpoint_every=args.steps,
                out=str(out / f"{task}__etpo__{seed}"),
            )
            if (Path(cfg.out) / "config.json").exists():
                import shutil

                shutil.rmtree(cfg.out)
            started = time.perf_counter()
            run = train(cfg, progress=False)
            train_s = time.perf_counter() - started
            trained = evaluate(
                run, task, args.eval_episodes, seed=eval_seed, cfg=dataclasses.replace(cfg)
            )
            records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            gain = trained["mean_reward"] - base["mean_reward"]
            se = math.sqrt(base["sem"] ** 2 + trained["sem"] ** 2)
            row = {
                "seed": seed,
                "trained": trained,
                "gain": gain,
                "gain_in_se": gain / se if se > 0 else float("nan"),
                "final_kl": records[-1].get("stats/kl"),
                "train_s": train_s,
                "curve": [r.get("charts/mean_reward") for r in records],
            }
            runs.append(row)
            print(f"  seed {seed}: ETPO {trained['mean_reward']:.4f} ± {trained['sem']:.4f} "
                  f"(valid {trained['valid_rate']:.2f}); gain {gain:+.4f} = {row['gain_in_se']:+.1f} SE; "
                  f"KL(π‖ρ) {row['final_kl']:.3f}; train {train_s:.0f} s", flush=True)  # fmt: skip
        pooled = [r["trained"]["mean_reward"] for r in runs]
        mean_trained = sum(pooled) / len(pooled)
        # SE of the across-seed mean: each seed's evaluation SE, pooled (seeds are independent)
        se_trained = math.sqrt(sum(r["trained"]["sem"] ** 2 for r in runs)) / len(runs)
        se = math.sqrt(base["sem"] ** 2 + se_trained**2)
        summary = {
            "starter": base,
            "runs": runs,
            "etpo_mean_over_seeds": mean_trained,
            "gain_over_seeds": mean_trained - base["mean_reward"],
            "gain_over_seeds_in_se": (mean_trained - base["mean_reward"]) / se if se else None,
        }
        results[task] = summary
        print(f"  mean over {len(runs)} seeds: {mean_trained:.4f}; gain "
              f"{summary['gain_over_seeds']:+.4f} = {summary['gain_over_seeds_in_se']:+.1f} SE", flush=True)  # fmt: skip
    (out / "learning.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, out / "learning.png")


def _plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3), squeeze=False)
    for ax, (task, summary) in zip(axes[0], results.items()):
        for run in summary["runs"]:
            ax.plot([c for c in run["curve"]], label=f"seed {run['seed']}", linewidth=1)
        ax.axhline(
            summary["starter"]["mean_reward"], color="black", linestyle="--", label="starter"
        )
        ax.set_title(task)
        ax.set_xlabel("update")
        ax.set_ylabel("mean reward of rollouts")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
