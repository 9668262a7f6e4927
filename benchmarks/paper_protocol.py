"""The shipped baselines under the POAD paper's protocol, beside the paper's published numbers.

``DataSciPaper-v0`` scores a ``build_model`` by the mean ROC AUC over five random 50/50 splits
(seeds 0-4, each in a fresh kernel). The POAD paper reports, under that protocol, ROC AUC 0.728
(pharyngitis) and 0.863 (spaceship_titanic) for its best agent, and 0.708 / 0.841 for CAAFE with
GPT-4. The baselines are deterministic, so one episode per baseline and task gives their score.

    ETPO_REAL_DATA=path/to/shared/data/real python benchmarks/paper_protocol.py

Needs the shared real CSVs (``$ETPO_REAL_DATA``, else ``shared/data/real`` beside the checkout).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.leaderboard.runner import BASELINE_SPECS, load_agent

PUBLISHED = {  # ROC AUC under the paper's protocol
    "pharyngitis": {"POAD (best agent)": 0.728, "CAAFE + GPT-4": 0.708},
    "spaceship_titanic": {"POAD (best agent)": 0.863, "CAAFE + GPT-4": 0.841},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default=",".join(BASELINE_SPECS))
    parser.add_argument("--tasks", default=",".join(PUBLISHED))
    parser.add_argument("--sandbox", default="local")
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    agents = [a for a in args.agents.split(",") if a]
    started = time.perf_counter()
    scores: dict[tuple[str, str], tuple[float, float]] = {}
    for task in tasks:
        for spec in agents:
            agent = load_agent(spec)
            env = gym.make("DataSciPaper-v0", task=task, sandbox=args.sandbox)
            try:
                observation, info = env.reset(seed=0)
                done = False
                while not done:  # a failed attempt is followed by the baseline's fallback
                    observation, reward, terminated, truncated, info = env.step(
                        agent.act(observation, info)
                    )
                    done = terminated or truncated
            finally:
                env.close()
            splits = info.get("scores") or []
            std = float(np.std(splits)) if splits else float("nan")
            scores[task, spec] = (float(reward), std)
            print(
                f"{task} {spec}: {reward:.3f} (status {info['status']}, splits "
                f"{', '.join(f'{s:.3f}' for s in splits)})",
                flush=True,
            )
    header = "| ROC AUC, 5 random 50/50 splits | " + " | ".join(f"`{t}`" for t in tasks) + " |"
    print("\n" + header)
    print("|---|" + "---:|" * len(tasks))
    for name in PUBLISHED[tasks[0]]:
        cells = [f"{PUBLISHED.get(t, {}).get(name, float('nan')):.3f}" for t in tasks]
        print(f"| {name} (published) | " + " | ".join(cells) + " |")
    for spec in agents:
        cells = [f"{scores[t, spec][0]:.3f} ± {scores[t, spec][1]:.3f}" for t in tasks]
        print(f"| `{spec}` (this env) | " + " | ".join(cells) + " |")
    print(f"\nwall time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
