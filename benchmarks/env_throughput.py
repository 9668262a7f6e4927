"""Per-step cost of running agent code: in-process ``exec`` versus the sandboxes, in one run.

Prints, for the same code on the same split, medians of
(a) in-process ``exec`` — how the ETPO paper's env runs code: the speed floor, zero isolation;
(b) the local kernel sandbox (``DataSci-v0`` with ``sandbox="local"``), and, with ``--docker``,
(c) the Docker sandbox: cold start to first execute, episode reset (a new seed, and an RL loop's
seedless reset served by the warm pool), trivial-cell round trip, a trivial step and a small
scikit-learn fit step (timed once the pool is idle), each with its ratio to (a) and, for Docker,
to (b). With ``--docker`` it then prints the episode throughput of N = 1, 2, 4 Docker envs in an
``AsyncVectorEnv`` (reset + one small fit per episode) and its scaling relative to N = 1.
In-process ``exec`` runs BLAS with one thread, like the kernels, for a fair ratio.

    python benchmarks/env_throughput.py [--reps 15] [--task breast_cancer]
        [--docker] [--episodes 6] [--parallel 1,2,4]

Docker targets (issue #3): warm small-fit step <= 1.5x in-process exec, trivial round trip
< 10 ms, warm-pool reset < 0.5 s, near-linear scaling up to the number of cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import gymnasium as gym
from threadpoolctl import threadpool_limits

import etpo_gym
from etpo_gym import prompts
from etpo_gym.scoring import score
from etpo_gym.tasks.base import holdout_split

SETTLE_S = 4.0
TARGETS = {
    "trivial cell round trip": "< 10 ms",
    "episode reset, warm pool": "< 500 ms",
    "step: small-fit": "<= 1.5x exec",
}

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


def _step_fn(env: gym.Env, body: str) -> Callable[[], None]:
    def step() -> None:
        # A success ends the episode; the env is put back into a running episode without a
        # kernel restart so that only the step is timed.
        env.unwrapped._done = False
        env.unwrapped._step = 0
        _, _, _, _, info = env.step(body)
        assert info["status"] == "ok", info["error"]

    return step


def env_figures(backend: str, task_name: str, reps: int) -> dict[str, float]:
    """Cold start, resets, trivial round trip and step times of one backend, in ms."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    env = gym.make("DataSci-v0", task=task_name, sandbox=backend)
    env.reset(seed=0)
    sandbox = env.unwrapped.sandbox
    sandbox.execute("pass")
    figures["cold start to first execute"] = 1000 * (time.perf_counter() - start)
    try:
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
        # Steps are timed once the pool has finished pre-starting: right after a reset the next
        # episode's kernel still boots on the same cores.
        time.sleep(SETTLE_S)
        for label, body in BODIES.items():
            figures[f"step: {label}"] = median_ms(_step_fn(env, body), reps)
    finally:
        env.close()
    return figures


def vector_throughput(backend: str, n: int, task: str, episodes: int) -> float:
    """Episodes per second of ``n`` async envs, each episode a reset and one small-fit step."""
    envs = gym.make_vec(
        "DataSci-v0", num_envs=n, vectorization_mode="async", task=task, sandbox=backend
    )
    body = BODIES["small-fit"]
    try:
        envs.reset(seed=list(range(n)))
        envs.step([body] * n)  # the first episode pays the cold starts: not timed
        done = 0
        start = time.perf_counter()
        while done < episodes * n:
            # Autoreset (next-step mode): a step after the end of an episode resets that env, so
            # the timed loop includes the seedless resets an RL loop does.
            _, _, terminated, truncated, _ = envs.step([body] * n)
            done += int((terminated | truncated).sum())
        return done / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--task", default="breast_cancer")
    parser.add_argument("--docker", action="store_true", help="also measure the Docker backend")
    parser.add_argument("--episodes", type=int, default=6, help="timed episodes per Docker env")
    parser.add_argument("--parallel", default="1,2,4", help="Docker env counts for throughput")
    args = parser.parse_args()
    if args.docker:
        from etpo_gym.sandbox.docker import docker_status

        ok, reason = docker_status()
        if not ok:
            sys.exit(f"env_throughput: the Docker sandbox cannot run here: {reason}")

    with threadpool_limits(1):
        exec_ms = {
            f"step: {label}": median_ms(in_process_step(args.task, body), args.reps)
            for label, body in BODIES.items()
        }
    backends = ["local"] + (["docker"] if args.docker else [])
    results = {name: env_figures(name, args.task, args.reps) for name in backends}

    print(f"\ntask {args.task}, {args.reps} repetitions, medians in ms, {os.cpu_count()} cores\n")
    header = f"{'measure':<28} {'exec':>8}" + "".join(
        f" {name:>8} {'/exec':>6}" for name in backends
    )
    if args.docker:
        header += f" {'d/local':>7}  target"
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for measure in results["local"]:
        base = exec_ms.get(measure)
        row = f"{measure:<28} {base if base is not None else nan:>8.1f}"
        for name in backends:
            value = results[name][measure]
            row += f" {value:>8.1f} {value / base if base else nan:>6.2f}"
        if args.docker:
            ratio = results["docker"][measure] / results["local"][measure]
            row += f" {ratio:>7.2f}  {TARGETS.get(measure, '')}"
        print(row)

    if args.docker:
        counts = [int(n) for n in args.parallel.split(",")]
        print(f"\nparallel Docker envs (AsyncVectorEnv), {args.episodes} timed episodes each\n")
        print(f"{'envs':>4} {'episodes/s':>11} {'x one env':>10}")
        base_rate = None
        for n in counts:
            rate = vector_throughput("docker", n, args.task, args.episodes)
            base_rate = base_rate or rate
            print(f"{n:>4} {rate:>11.2f} {rate / base_rate:>10.2f}")


if __name__ == "__main__":
    main()
