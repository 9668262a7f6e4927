"""Per-step cost of running agent code: in-process ``exec`` versus the sandboxes.

Prints, for the same code on the same split, the median step time of
(a) in-process ``exec`` — how the ETPO paper's env runs code: the speed floor, zero isolation;
(b) the local kernel sandbox (``DataSci-v0`` with ``sandbox="local"``), and, with ``--docker``,
(c) the Docker sandbox; each as a ratio to (a), plus episode-reset time and the trivial-cell round
trip. All figures come from one run, side by side.

    python benchmarks/env_throughput.py [--reps 15] [--task breast_cancer] [--docker]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import etpo_gym
from etpo_gym import prompts
from etpo_gym.scoring import score
from etpo_gym.tasks.base import holdout_split

BODIES = {
    "trivial": (
        "from sklearn.dummy import DummyClassifier\n"
        "model = DummyClassifier(strategy='prior').fit(x_train, y_train)\n"
    ),
    "small-fit": (
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))\n"
        "model.fit(x_train, y_train)\n"
    ),
}


def median_ms(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def in_process_step(task_name: str, body: str, seed: int = 0) -> Callable[[], float]:
    """One paper-style step: exec the code in this process, fit, predict, score."""
    task = etpo_gym.get_task(task_name)
    train, evaluation = holdout_split(task.data.y, seed, 0.3)
    source = prompts.action_to_code(body)

    def step() -> float:
        namespace: dict[str, object] = {}
        exec(compile(source, "<agent>", "exec"), namespace)
        model = namespace["build_model"](task.data.X[train], task.data.y[train])
        proba = model.predict_proba(task.data.X[evaluation])[:, 1]
        return score(task, task.data.y[evaluation], proba)

    return step


def env_figures(backend: str, task_name: str, reps: int) -> dict[str, float]:
    """Cold start, reset, trivial round trip and step times of one backend, in ms."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    env = gym.make("DataSci-v0", task=task_name, sandbox=backend)
    env.reset(seed=0)
    figures["cold start to first reset"] = 1000 * (time.perf_counter() - start)
    try:
        sandbox = env.unwrapped.sandbox
        figures["trivial cell round trip"] = median_ms(lambda: sandbox.execute("pass"), reps * 4)
        figures["episode reset, new seed"] = median_ms(lambda: env.reset(seed=0), reps, warmup=0)

        # RL loops reset without a seed: the env predicted it, and the sandbox pre-started that
        # kernel while the previous episode ran (simulated by 2 s of work between resets).
        env.reset()
        time.sleep(2.0)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            env.reset()
            times.append(time.perf_counter() - start)
            time.sleep(2.0)
        figures["episode reset, warm pool"] = 1000 * statistics.median(times)
        for label, body in BODIES.items():

            def step(body: str = body) -> None:
                # A success ends the episode; the env is put back into a running episode without
                # a kernel restart so that only the step is timed.
                env.unwrapped._done = False
                env.unwrapped._step = 0
                _, _, _, _, info = env.step(body)
                assert info["status"] == "ok", info["error"]

            figures[f"step: {label}"] = median_ms(step, reps)
    finally:
        env.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--task", default="breast_cancer")
    parser.add_argument("--docker", action="store_true", help="also measure the Docker backend")
    args = parser.parse_args()

    exec_ms = {
        f"step: {label}": median_ms(in_process_step(args.task, body), args.reps)
        for label, body in BODIES.items()
    }
    backends = ["local"] + (["docker"] if args.docker else [])
    results = {name: env_figures(name, args.task, args.reps) for name in backends}

    print(f"\ntask {args.task}, {args.reps} repetitions, medians in ms\n")
    header = f"{'measure':<28} {'exec':>9}" + "".join(
        f" {name:>9} {'x exec':>7}" for name in backends
    )
    print(header)
    print("-" * len(header))
    for measure in results["local"]:
        base = exec_ms.get(measure)
        row = f"{measure:<28} {base if base is not None else float('nan'):>9.1f}"
        for name in backends:
            value = results[name][measure]
            ratio = value / base if base else float("nan")
            row += f" {value:>9.1f} {ratio:>7.2f}"
        print(row)
    if "docker" in results:
        print("\ndocker / local:")
        for measure, value in results["docker"].items():
            print(f"  {measure:<28} {value / results['local'][measure]:.2f}")
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
