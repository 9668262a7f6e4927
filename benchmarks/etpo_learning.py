"""Does ETPO learn? ETPO and GRPO against the starter's best decoding, paired, at equal env steps.

Every method starts from the shipped starter policy and trains on the same tasks (``--train``,
one drawn per episode) for the same number of env steps, one attempt per episode. Then every
policy is scored on the same evaluation episodes of the training tasks and of tasks it never saw
(``--heldout``): one attempt each, reward = the task metric or −1 on an error.

Methods (rows):

* ``starter greedy`` and ``starter best-T`` (controls): the untrained starter, greedy and at the
  temperature that scores best on validation episodes, per task, from ``--temperatures``;
* ``ETPO zero-reward`` (control): ETPO with the default settings, learning from reward 0 on
  every step (the same updates without the signal);
* ``ETPO paper-Q``: the critic's logits as Q, β = 0.01, one-step targets: the paper's method
  (and this project's previous defaults);
* ``ETPO``: the zero-initialised Q head with the validated settings (``EtpoConfig`` defaults);
* ``GRPO``: TRL's GRPOTrainer (``etpo_agents.grpo``), groups of 8 bodies per prompt.

A trained policy is decoded greedily (``--decodings 0``, the default); given several decodings
(``--decodings 0,0.8``) it uses, per task, the one that scores best on the validation episodes.
Validation episodes choose; evaluation episodes only score. Paired comparisons: per evaluation
episode, the method's reward minus the strongest control's (the control with the best mean on
the evaluation episodes: a conservative choice), averaged over seeds; mean ± SE over episodes,
and each seed's own difference in SE units. A greedy decode writes one body per task prompt, so
its SE covers the episodes' data splits, not the variation between bodies.

    python benchmarks/etpo_learning.py                  # the full table: 3 seeds
    python benchmarks/etpo_learning.py --seeds 1        # the README's table (one seed)
    python benchmarks/etpo_learning.py --seeds 1 --env-steps 16 --val-episodes 4 \\
        --eval-episodes 4 --out runs/learning-smoke     # a few minutes

Resumable: finished training runs (``OUT/<method>__<seed>/done.json``) are kept and every
executed (episode, body) reward is memoised in ``OUT/scores.jsonl``; rerun the same command
after a kill. Several processes may share OUT (e.g. one per ``--methods`` entry, to use idle
cores): a run another live process is training is waited for, not restarted. Writes
``OUT/learning.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etpo_agents.etpo.config import EtpoConfig
from etpo_agents.etpo.evaluation import EpisodeScorer, episode_seeds, paired, sample_policy
from etpo_agents.etpo.trainer import train
from etpo_agents.starter import starter_path

TRAIN = "skill_interactions,skill_scale,skill_dates"
HELDOUT = "skill_categorical,skill_missing,titanic_passengers,contraception_use"
TRAINED = ("etpo", "etpo-paper", "etpo-zero", "grpo")
LABELS = {
    "starter-greedy": "starter greedy",
    "starter-best": "starter best-T",
    "etpo-zero": "ETPO zero-reward",
    "etpo-paper": "ETPO paper-Q",
    "etpo": "ETPO",
    "grpo": "GRPO",
}
CONTROLS = ("starter-greedy", "starter-best", "etpo-zero")
#: ETPO as the paper has it (logits as Q, β 0.01, one-step targets), with the settings this
#: project shipped before the Q head (lr 1e-4, 2 critic steps and 1 actor step per update).
PAPER = dict(
    q_param="paper",
    beta=0.01,
    td_lambda=0.0,
    actor_lr=1e-4,
    critic_lr=1e-4,
    critic_steps=2,
    actor_steps=1,
    polyak=0.9,
    reward_baseline=0.1,
)


def etpo_config(method: str, seed: int, args: argparse.Namespace, out: Path) -> EtpoConfig:
    """The ETPO settings of a method: the validated defaults, or the paper's Q and β."""
    steps = args.env_steps // args.num_envs
    common = dict(
        task=args.train,
        seed=seed,
        steps=steps,
        num_envs=args.num_envs,
        env_steps_per_update=1,
        max_episode_steps=1,
        checkpoint_every=steps,
        # The sandbox GRPO and the scorer use (and the one the published runs trained in).
        sandbox="local",
        out=str(out),
    )
    if method == "etpo-paper":  # the paper's parametrisation and this project's old defaults
        return EtpoConfig(**common, **PAPER)
    return EtpoConfig(**common, zero_rewards=method == "etpo-zero")


def train_method(method: str, seed: int, args: argparse.Namespace) -> tuple[Path, float]:
    """Train (or reuse a finished run); returns the policy directory and training seconds."""
    out = Path(args.out) / f"{method}__{seed}"
    done = out / "done.json"
    _wait_for_other_trainer(out)
    if done.is_file():
        info = json.loads(done.read_text())
        return Path(info["policy"]), float(info["train_s"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "owner.pid").write_text(str(os.getpid()))
    started = time.perf_counter()
    if method == "grpo":
        from etpo_agents.grpo import GrpoConfig, train_grpo

        run = train_grpo(
            GrpoConfig(
                task=args.train,
                seed=seed,
                env_steps=args.env_steps,
                learning_rate=args.grpo_lr,
                temperature=EtpoConfig.temperature,
                out=str(out),
            )
        )
        policy = run / "policy"
    else:
        run = train(etpo_config(method, seed, args, out), progress=False)
        policy = run / "checkpoint" / "policy"
    train_s = time.perf_counter() - started
    done.write_text(json.dumps({"policy": str(policy), "train_s": train_s}) + "\n")
    return policy, train_s


def _wait_for_other_trainer(out: Path) -> None:
    """Several benchmark processes may share OUT (one per method, to use idle cores): wait
    while another live process trains this run, rather than delete its directory."""
    owner = out / "owner.pid"
    while owner.is_file() and not (out / "done.json").is_file():
        pid = int(owner.read_text() or 0)
        if pid == os.getpid() or not _alive(pid):
            return
        time.sleep(30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def score(
    scorer: EpisodeScorer,
    policy: Path,
    task: str,
    split: str,
    episodes: int,
    temperature: float,
    sample_seed: int,
) -> dict[str, Any]:
    """Rewards of ``policy`` at ``temperature`` (0: greedy) on the first episodes of a split."""
    seeds = episode_seeds(split, episodes)
    bodies = sample_policy(
        policy, scorer.prompt(task), episodes, temperature=temperature, seed=sample_seed
    )
    results = scorer.score(task, seeds, bodies)
    rewards = [r["reward"] for r in results]
    valid = [r["status"] == "ok" for r in results if r["reward"] is not None]
    return {
        "temperature": temperature,
        "rewards": rewards,
        "mean": _mean(rewards),
        "valid": float(np.mean(valid)) if valid else float("nan"),
        "distinct_bodies": len(set(bodies)),
    }


def _mean(rewards: list[float | None]) -> float:
    kept = [r for r in rewards if r is not None]
    return float(np.mean(kept)) if kept else float("nan")


def _sample_seed(seed: int, task_index: int, split: str) -> int:
    return 10_000 * (seed + 1) + 100 * task_index + (50 if split == "validation" else 0)


def choose_decodings(
    scorer: EpisodeScorer,
    policy: Path,
    tasks: list[str],
    temperatures: list[float],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Per task, the temperature (0: greedy) with the best mean on the validation episodes
    (ties to the lower one), and every candidate's validation mean."""
    out = {}
    for i, task in enumerate(tasks):
        if len(temperatures) == 1:
            out[task] = {"temperature": temperatures[0], "validation": {}}
            continue
        val = {
            t: score(scorer, policy, task, "validation", args.val_episodes, t,
                     _sample_seed(0, i, "validation"))["mean"]
            for t in temperatures
        }  # fmt: skip
        best = max(temperatures, key=lambda t: (val[t], -t))
        out[task] = {"temperature": best, "validation": {str(t): v for t, v in val.items()}}
    return out


def evaluate_policy(
    scorer: EpisodeScorer,
    policy: Path,
    seed: int,
    tasks: list[str],
    chosen: dict[str, dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Per task: rewards on the evaluation episodes at the chosen decoding (samples drawn with
    this seed)."""
    out = {}
    for i, task in enumerate(tasks):
        result = score(
            scorer, policy, task, "evaluation", args.eval_episodes,
            chosen[task]["temperature"], _sample_seed(seed, i, "evaluation"),
        )  # fmt: skip
        result["validation"] = chosen[task]["validation"]
        out[task] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default=TRAIN, help="training tasks, comma-separated")
    parser.add_argument("--heldout", default=HELDOUT, help="tasks never trained on")
    parser.add_argument("--methods", default=",".join(TRAINED))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--seed-order", default="", help="train the seeds in this order (e.g. 2,1,0)"
    )
    parser.add_argument("--env-steps", type=int, default=96, help="per training run")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--grpo-lr", type=float, default=1e-4)
    parser.add_argument("--temperatures", default="0.03,0.1,0.3,0.8")
    parser.add_argument("--decodings", default="0", help="of trained policies (0: greedy)")
    parser.add_argument("--val-episodes", type=int, default=8)
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--out", default="runs/learning")
    args = parser.parse_args()
    # One torch thread: on a shared 2-core machine a second thread spins against other jobs
    # and made generation 20x slower in our measurements.
    torch.set_num_threads(1)
    started_all = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_tasks = [t for t in args.train.split(",") if t]
    heldout = [t for t in args.heldout.split(",") if t]
    tasks = train_tasks + heldout
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(TRAINED))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; accepted: {', '.join(TRAINED)}")
    if args.env_steps % args.num_envs:
        parser.error(f"--env-steps {args.env_steps} must be a multiple of --num-envs")
    temps = [float(t) for t in args.temperatures.split(",")]
    seeds = list(range(args.seeds))
    settings = {k: v for k, v in vars(args).items()}
    settings["etpo"] = dataclasses.asdict(etpo_config("etpo", 0, args, out))
    results: dict[str, Any] = {"settings": settings, "runs": {}}

    with EpisodeScorer(cache=out / "scores.jsonl") as scorer:
        # -- controls: the untrained starter -------------------------------------------------
        clock = time.perf_counter()
        starter = starter_path()
        greedy = evaluate_policy(
            scorer, starter, 0, tasks, choose_decodings(scorer, starter, tasks, [0.0], args), args
        )
        results["runs"]["starter-greedy"] = {s: greedy for s in seeds}
        best_t = choose_decodings(scorer, starter, tasks, temps, args)
        results["runs"]["starter-best"] = {
            s: evaluate_policy(scorer, starter, s, tasks, best_t, args) for s in seeds
        }
        print(f"starter controls: {time.perf_counter() - clock:.0f} s", flush=True)
        # -- trained methods ----------------------------------------------------------------
        train_s: dict[str, dict[int, float]] = {}
        order = [int(x) for x in args.seed_order.split(",") if x] or seeds
        for method in methods:
            results["runs"][method] = {}
            for seed in order:
                policy, seconds = train_method(method, seed, args)
                clock = time.perf_counter()
                decodings = [float(t) for t in args.decodings.split(",")]
                chosen = choose_decodings(scorer, policy, tasks, decodings, args)
                evaluation = evaluate_policy(scorer, policy, seed, tasks, chosen, args)
                results["runs"][method][seed] = evaluation
                train_s.setdefault(method, {})[seed] = seconds
                means = " ".join(f"{t} {evaluation[t]['mean']:.3f}" for t in tasks)
                print(f"{method} seed {seed}: train {seconds / 60:.1f} min, evaluation "
                      f"{(time.perf_counter() - clock) / 60:.1f} min; {means}", flush=True)  # fmt: skip
        results["train_s"] = train_s
        results["executed_bodies"] = scorer.executed
    results["wall_s"] = time.perf_counter() - started_all
    results["summary"] = summarise(results, tasks, seeds)
    (out / "learning.json").write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results, train_tasks, heldout, seeds)


def summarise(results: dict[str, Any], tasks: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per task: the strongest control, and each method's paired difference against it."""
    runs = results["runs"]
    summary: dict[str, Any] = {}
    for task in tasks:

        def rewards(method: str, seed: int, task: str = task) -> list[float | None]:
            return runs[method][seed][task]["rewards"]

        def over_seeds(method: str) -> list[float | None]:
            per_seed = [rewards(method, s) for s in seeds]
            return [
                None if any(r[i] is None for r in per_seed) else float(np.mean([r[i] for r in per_seed]))
                for i in range(len(per_seed[0]))
            ]  # fmt: skip

        controls = [c for c in CONTROLS if c in runs]
        strongest = max(controls, key=lambda c: _mean(over_seeds(c)))
        entry: dict[str, Any] = {
            "strongest_control": strongest,
            "control_mean": _mean(over_seeds(strongest)),
            "methods": {},
        }
        for method in runs:
            if method == strongest:
                continue
            diffs = [
                None if a is None or b is None else a - b
                for a, b in zip(over_seeds(method), over_seeds(strongest))
            ]
            pooled = paired(diffs, [0.0] * len(diffs))
            per_seed = [paired(rewards(method, s), rewards(strongest, s)) for s in seeds]
            entry["methods"][method] = {
                "mean": _mean(over_seeds(method)),
                "diff": pooled.diff,
                "se": pooled.se,
                "z": pooled.z,
                "per_seed_z": [p.z for p in per_seed],
                "per_seed_diff": [p.diff for p in per_seed],
            }
        if "etpo" in runs and "grpo" in runs:
            vs = paired(over_seeds("etpo"), over_seeds("grpo"))
            entry["etpo_minus_grpo"] = {"diff": vs.diff, "se": vs.se, "z": vs.z}
        summary[task] = entry
    return summary


def _fmt_z(z: float) -> str:
    return "±inf" if math.isinf(z) else f"{z:+.1f}"


def print_tables(
    results: dict[str, Any], train_tasks: list[str], heldout: list[str], seeds: list[int]
) -> None:
    """The method × task × seed table, then paired differences against the strongest control."""
    runs, summary = results["runs"], results["summary"]
    tasks = train_tasks + heldout
    names = [t + ("" if t in train_tasks else " (held out)") for t in tasks]
    print("\nmean reward on the evaluation episodes (decoding: g = greedy, else temperature)")
    print("| method | seed | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(tasks))
    for method, by_seed in runs.items():
        shown = seeds[:1] if method == "starter-greedy" else seeds
        for seed in shown:
            cells = []
            for task in tasks:
                r = by_seed[seed][task]
                t = r["temperature"]
                cells.append(f"{r['mean']:.3f} ({'g' if t == 0 else f'{t:g}'})")
            label = "–" if method == "starter-greedy" else str(seed)
            print(f"| {LABELS[method]} | {label} | " + " | ".join(cells) + " |")
    print("\npaired difference against the strongest control, mean over seeds ± SE over episodes "
          "(z); per-seed z")  # fmt: skip
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(tasks))
    controls = [
        f"{LABELS[summary[t]['strongest_control']]} {summary[t]['control_mean']:.3f}" for t in tasks
    ]
    print("| strongest control | " + " | ".join(controls) + " |")
    for method in runs:
        cells = []
        for task in tasks:
            m = summary[task]["methods"].get(method)
            if m is None:
                cells.append("(the control)")
                continue
            per_seed = "/".join(_fmt_z(z) for z in m["per_seed_z"])
            cells.append(f"{m['diff']:+.3f} ± {m['se']:.3f} ({_fmt_z(m['z'])}; {per_seed})")
        print(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    if any("etpo_minus_grpo" in summary[t] for t in tasks):
        cells = []
        for task in tasks:
            v = summary[task].get("etpo_minus_grpo")
            cells.append(
                "–" if v is None else f"{v['diff']:+.3f} ± {v['se']:.3f} ({_fmt_z(v['z'])})"
            )
        print("| ETPO − GRPO | " + " | ".join(cells) + " |")
    train_s = results.get("train_s", {})
    for method, by_seed in train_s.items():
        minutes = ", ".join(f"{s / 60:.1f}" for s in by_seed.values())
        print(f"training minutes, {LABELS[method]}: {minutes}")
    print(f"bodies executed: {results.get('executed_bodies')}; wall time "
          f"{results['wall_s'] / 60:.0f} min")  # fmt: skip


if __name__ == "__main__":
    main()
