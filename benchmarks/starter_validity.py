"""Valid-sample rate of the starter policy on the built-in tasks, through the real env.

For each task: sample ``--samples`` bodies for the task's first prompt (the sampling settings the
ETPO agent uses: temperature 0.8, top-k 50), then run each through
``gym.make("DataSci-v0", task=name, sandbox="local")``: one fresh episode (``reset``) and ``step(body)`` each.
A sample is *valid* when ``info["status"] == "ok"``. Prints, per task, the valid rate, the score
of the valid samples (mean and range: the room RL has to improve), how many distinct final
estimators the valid samples use, and the share of valid bodies that appear nowhere in the
training corpus (new combinations, not recitations); then the most frequent errors.

    python benchmarks/starter_validity.py [--samples 64] [--tasks breast_cancer,wine]
        [--temperature 0.8] [--top-k 50] [--checkpoint DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import gymnasium as gym

import etpo_gym
from etpo_agents.starter import starter_path
from etpo_agents.starter.corpus import generate_corpus
from etpo_agents.starter.sample import final_estimator, sample_bodies


def corpus_bodies(checkpoint: Path) -> set[str]:
    """Every body the checkpoint was trained on (regenerated from its build_info)."""
    info = json.loads((checkpoint / "build_info.json").read_text())
    cfg = info["config"]
    corpus = generate_corpus(cfg["steps"] * cfg["batch_size"], cfg["seed"])
    return {sample.body.strip() for sample in corpus}


def run_task(
    name: str, model, tokenizer, args: argparse.Namespace, known: set[str]
) -> dict[str, object]:
    env = gym.make("DataSci-v0", task=name, sandbox="local", max_steps=1, timeout=args.timeout)
    try:
        prompt, _ = env.reset(seed=0)
        started = time.perf_counter()
        bodies = sample_bodies(
            model,
            tokenizer,
            prompt,
            n=args.samples,
            temperature=args.temperature,
            top_k=args.top_k,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )
        sample_s = time.perf_counter() - started
        scores: list[float] = []
        estimators: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        novel = 0
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            if i:  # the next episode's seed follows from seed 0, so its kernel is pre-started
                env.reset()
            _, _, _, _, info = env.step(body)
            if info["status"] == "ok":
                scores.append(float(info["score"]))
                estimators[final_estimator(body)] += 1
                novel += body.strip() not in known
            else:
                errors[f"{info['status']}: {info['error'].splitlines()[0][:90]}"] += 1
        env_s = time.perf_counter() - started
    finally:
        env.close()
    return {
        "task": name,
        "samples": len(bodies),
        "valid": len(scores),
        "valid_rate": len(scores) / len(bodies),
        "score_mean": statistics.fmean(scores) if scores else None,
        "score_min": min(scores) if scores else None,
        "score_max": max(scores) if scores else None,
        "estimators": dict(estimators.most_common()),
        "novel_rate": novel / len(scores) if scores else None,
        "errors": dict(errors.most_common()),
        "sample_seconds": round(sample_s, 2),
        "env_seconds": round(env_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--tasks", default="", help="comma-separated names (default: all)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--checkpoint", type=Path, default=starter_path())
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    names = [n for n in args.tasks.split(",") if n] or etpo_gym.task_names()
    known = corpus_bodies(args.checkpoint)

    rows = []
    header = (
        f"{'task':<28} {'valid':>11} {'mean score':>10} {'min':>6} {'max':>6} "
        f"{'models':>6} {'novel':>6}"
    )
    print(
        f"starter {args.checkpoint.name}: {args.samples} samples/task, "
        f"temperature {args.temperature}, top-k {args.top_k}, local sandbox"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        row = run_task(name, model, tokenizer, args, known)
        rows.append(row)

        def fmt(value: object, width: int, spec: str = ".3f") -> str:
            return f"{value:>{width}{spec}}" if isinstance(value, float) else f"{'-':>{width}}"

        print(
            f"{name:<28} {row['valid']:>3}/{row['samples']:<3} {row['valid_rate']:>4.0%} "
            f"{fmt(row['score_mean'], 10)} {fmt(row['score_min'], 6)} {fmt(row['score_max'], 6)} "
            f"{len(row['estimators']):>6} {fmt(row['novel_rate'], 6, '.0%')}",
            flush=True,
        )
    total = sum(r["samples"] for r in rows)
    valid = sum(r["valid"] for r in rows)
    print("-" * len(header))
    print(f"{'overall':<28} {valid:>3}/{total:<3} {valid / max(1, total):>4.0%}")
    errors: Counter[str] = Counter()
    for row in rows:
        errors.update(row["errors"])
    if errors:
        print("\nmost frequent failures:")
        for text, count in errors.most_common(6):
            print(f"  {count:>4}  {text}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args)
                    | {"checkpoint": str(args.checkpoint), "json": str(args.json)},
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
