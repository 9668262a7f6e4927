"""The curated real tasks: load times (first and cached) and the leakage / signal check scores.

    python benchmarks/real_tasks.py [--suite real-v1] [--no-checks]

For every task of the suite it prints the seconds to build the task the first time in this process
(read the wheel's file, infer types, shuffle rows) and again (the cached object), then the checks of
:mod:`etpo_gym.tasks.checks`: the best single-column depth-4 tree (the leakage check) and the
one-hot + linear and gradient-boosting pipelines (the signal check). docs/tasks.md shows the output.
"""

from __future__ import annotations

import argparse
import statistics
import time

from etpo_gym.tasks import get_task
from etpo_gym.tasks.checks import best_single_column, pipeline_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="real-v1")
    parser.add_argument("--no-checks", action="store_true", help="load times only")
    args = parser.parse_args()
    from etpo_gym.leaderboard.suites import get_suite

    started = time.perf_counter()
    _ = get_task("breast_cancer").data  # pandas, scikit-learn and the registry imported once
    first, again = [], []
    print(
        "| task | type | rows | first load s | cached s | best single column | linear | boosting |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for spec in get_suite(args.suite).tasks:
        t0 = time.perf_counter()
        task = get_task(spec.name)
        _ = task.data
        t1 = time.perf_counter()
        _ = get_task(spec.name).data
        t2 = time.perf_counter()
        first.append(t1 - t0)
        again.append(t2 - t1)
        if args.no_checks:
            print(f"| `{task.name}` | {task.task_type} | {task.n_rows} | {t1 - t0:.3f} | "
                  f"{t2 - t1:.6f} | | | |", flush=True)  # fmt: skip
            continue
        single, column = best_single_column(task)
        scores = pipeline_scores(task)
        print(
            f"| `{task.name}` | {task.task_type} | {task.n_rows} | {t1 - t0:.3f} | {t2 - t1:.6f} "
            f"| {single:.3f} (`{column}`) | {scores['linear']:.3f} | {scores['boosting']:.3f} |",
            flush=True,
        )
    print(
        f"\nfirst load: median {statistics.median(first):.3f} s, max {max(first):.3f} s; "
        f"cached: max {max(again) * 1e6:.0f} µs; wall time {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
