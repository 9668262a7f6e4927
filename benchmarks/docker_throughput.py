"""The Docker sandbox next to in-process ``exec`` and the local kernel, measured in one run.

Prints medians of: cold start to first reset, episode reset (same seed again, and an RL loop's
seedless reset with the warm pool), trivial-cell round trip, trivial step and small
scikit-learn fit step (timed once the pool is idle; in-process ``exec`` with one BLAS thread, like
the kernels), each with its ratio to in-process ``exec`` and to the local kernel; then
the episode throughput of N = 1, 2, 4 Docker envs in an ``AsyncVectorEnv`` (reset + one small
fit per episode) and its scaling relative to N = 1.

    python benchmarks/docker_throughput.py [--reps 15] [--task breast_cancer] [--episodes 6]

Targets (issue #3): warm small-fit step <= 1.5x in-process exec, trivial round trip < 10 ms,
warm-pool reset < 0.5 s, near-linear scaling up to the number of cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_throughput import BODIES, env_figures, in_process_step, median_ms

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.sandbox.docker import docker_status

SETTLE_S = 4.0
TARGETS = {
    "trivial cell round trip": "< 10 ms",
    "episode reset, warm pool": "< 500 ms",
    "step: small-fit": "<= 1.5x exec",
}


def settled_steps(backend: str, task: str, reps: int) -> dict[str, float]:
    """Median step times once the sandbox's pool has finished pre-starting (``env_figures`` times
    steps right after resets, while the next episode's kernel still boots on the same cores)."""
    env = gym.make("DataSci-v0", task=task, sandbox=backend)
    figures = {}
    try:
        env.reset(seed=0)
        time.sleep(SETTLE_S)
        for label, body in BODIES.items():

            def step(body: str = body) -> None:
                env.unwrapped._done = False  # back into the episode without a kernel restart
                env.unwrapped._step = 0
                _, _, _, _, info = env.step(body)
                assert info["status"] == "ok", info["error"]

            figures[f"step: {label}"] = median_ms(step, reps)
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
    parser.add_argument("--episodes", type=int, default=6, help="timed episodes per env")
    parser.add_argument("--parallel", default="1,2,4", help="env counts for the throughput table")
    args = parser.parse_args()
    ok, reason = docker_status()
    if not ok:
        sys.exit(f"docker_throughput: the Docker sandbox cannot run here: {reason}")

    # The kernels run BLAS with one thread; so does the in-process baseline, for a fair ratio.
    with threadpool_limits(1):
        exec_ms = {
            f"step: {label}": median_ms(in_process_step(args.task, body), args.reps)
            for label, body in BODIES.items()
        }
    local = env_figures("local", args.task, args.reps)
    docker = env_figures("docker", args.task, args.reps)
    local.update(settled_steps("local", args.task, args.reps))
    docker.update(settled_steps("docker", args.task, args.reps))

    print(f"\ntask {args.task}, {args.reps} repetitions, medians in ms, {os.cpu_count()} cores\n")
    header = (
        f"{'measure':<28} {'exec':>8} {'local':>8} {'docker':>8} {'d/exec':>7} {'d/local':>7}"
        f"  target"
    )
    print(header)
    print("-" * len(header))
    for measure, value in docker.items():
        base = exec_ms.get(measure)
        ref = local.get(measure, float("nan"))
        print(
            f"{measure:<28} {base if base else float('nan'):>8.1f} {ref:>8.1f} {value:>8.1f} "
            f"{value / base if base else float('nan'):>7.2f} {value / ref:>7.2f}  "
            f"{TARGETS.get(measure, '')}"
        )

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
