"""What did ETPO change in the code the policy writes? Estimator mix of ρ (the starter) vs π.

Samples ``--samples`` bodies for the task's first prompt from the starter policy and from each
trained run's π (same sampling seed and temperature), and prints how often each estimator class
is the model the body builds (the last estimator call in the body), with the share of additive
models (linear ones and naive Bayes): they cannot represent the XOR of ``skill_interactions``,
where their AUC is ≈ 0.5.

    python benchmarks/etpo_choices.py RUN_DIR [RUN_DIR ...] [--samples 100] [--seed 5]
        [--tasks skill_interactions,skill_dates] [--temperature 0.8]

RUN_DIRs are ``etpo-gym train``, ``benchmarks/etpo_learning.py`` or GRPO run directories; the
tasks are read from each run's ``config.json`` (all of a multi-task run's) unless ``--tasks``
names them.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

from etpo_agents.etpo.agent import EtpoAgent
from etpo_agents.etpo.evaluation import EpisodeScorer
from etpo_agents.starter import starter_path

ESTIMATOR = re.compile(
    r"\b([A-Z][A-Za-z]*(?:Classifier|Regressor|Regression|NB|Analysis|SVC|SVR))\("
)
ADDITIVE = {"LogisticRegression", "LinearDiscriminantAnalysis", "SGDClassifier", "GaussianNB"}


def estimator_mix(
    path: str | Path, prompt: str, samples: int, seed: int, temperature: float = 0.8
) -> collections.Counter:
    """Counts of the estimator each sampled body builds ("?" where none is found)."""
    agent = EtpoAgent.from_checkpoint(path, temperature=temperature)
    counts: collections.Counter = collections.Counter()
    for body in agent.act_batch([prompt] * samples, seed=seed):
        found = ESTIMATOR.findall(body)
        counts[found[-1] if found else "?"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="ETPO run directories")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--tasks", default="", help="comma-separated (default: each run's)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    args = parser.parse_args()
    by_task: dict[str, list[Path]] = collections.defaultdict(list)
    for run in map(Path, args.runs):
        config = run / "config.json"
        if not config.is_file():
            parser.error(f"{run} is not a run directory (no config.json)")
        tasks = args.tasks or json.loads(config.read_text())["task"]
        for task in (t.strip() for t in tasks.split(",") if t.strip()):
            by_task[task].append(run)
    for task, runs in by_task.items():
        with EpisodeScorer() as scorer:  # the env's own first observation
            prompt = scorer.prompt(task)
        print(f"\n{task}: estimator of {args.samples} sampled bodies (temperature "
              f"{args.temperature:g})")  # fmt: skip
        for label, path in [("starter (ρ)", starter_path()), *((r.name, r) for r in runs)]:
            mix = estimator_mix(path, prompt, args.samples, args.seed, args.temperature)
            additive = sum(n for name, n in mix.items() if name in ADDITIVE) / args.samples
            top = ", ".join(f"{name} {n}" for name, n in mix.most_common(5))
            print(f"  {label:<34} additive {additive:5.0%}   {top}")


if __name__ == "__main__":
    main()
