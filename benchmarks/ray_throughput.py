"""Episodes per second on Ray against the local process pool, on the same machine, in one run.

For N = 1, 2, 4 workers it times, in turns (local, Ray, local, Ray, ...), so that the machine's
changing load hits both alike:

(a) the vector env: ``gym.make_vec("DataSci-v0", vectorization_mode="async")`` (N local
    processes) against ``RayVectorEnv`` (N Ray actors, one CPU each), SAME_STEP autoreset and
    ``max_steps=1``, so that each step of each sub-env is one whole episode (a step, then the
    next episode's reset); timed after a warm-up step;
(b) the leaderboard runner: ``run_benchmark(jobs=N)`` (a process pool) against
    ``run_benchmark(ray=...)`` with each cell reserving one of the cluster's N CPUs (N cells at
    once); a cell is a whole episode in a fresh env (sandbox start included).

The Ray side runs on a local cluster made for each N (``ray.cluster_utils.Cluster``: a head and a
worker node offering N logical CPUs in all, loopback only, no usage report), so that N cells or
N actors run at once, as N local processes do; the ratio Ray / local is Ray's overhead on one
machine, not a multi-machine speed-up. Every episode runs the ``logreg``
baseline's code on one task with the local kernel sandbox.

    nice -n 15 python benchmarks/ray_throughput.py [--episodes 16] [--workers 1,2,4]
        [--task breast_cancer]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# Read when ray is imported: bind to loopback only, send no usage report.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.agent import load_agent
from etpo_gym.leaderboard import run_benchmark


def _code(task: str) -> str:
    env = gym.make("DataSci-v0", task=task, sandbox="local")
    try:
        observation, info = env.reset(seed=0)
        return load_agent("logreg").act(observation, info)
    finally:
        env.close()


def vector_rate(make: Any, n: int, episodes: int, code: str) -> float:
    """Episodes/s of a vector env with ``n`` sub-envs (one episode per sub-env step)."""
    envs = make(n)
    try:
        envs.reset(seed=0)
        envs.step([code] * n)  # warm-up: kernels up, pools filled
        steps = max(1, episodes // n)
        started = time.perf_counter()
        done = 0
        for _ in range(steps):
            _, _, terminated, truncated, info = envs.step([code] * n)
            assert np.all(terminated | truncated), info.get("status")
            done += n
        return done / (time.perf_counter() - started)
    finally:
        envs.close()


def bench_rate(out: Path, task: str, episodes: int, **kwargs: Any) -> float:
    """Cells (episodes)/s of ``run_benchmark`` with one agent on one task."""
    started = time.perf_counter()
    run_benchmark(
        ["logreg"], task, seeds=episodes, out=out, sandbox="local", max_steps=1, progress=False,
        **kwargs,
    )  # fmt: skip
    return episodes / (time.perf_counter() - started)


def _cluster(n: int) -> Any:
    """A local cluster of a head and a worker node offering ``n`` CPUs in all (the head the odd
    one), so that N cells or N actors of one CPU each run at once, on both nodes from N = 2."""
    import ray
    from ray.cluster_utils import Cluster

    store = {"object_store_memory": 100 * 2**20}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": n - n // 2, "include_dashboard": False, **store},
    )
    try:
        cluster.add_node(num_cpus=n // 2, **store)
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=16, help="episodes per measurement")
    parser.add_argument("--workers", default="1,2,4", help="worker counts")
    parser.add_argument("--task", default="breast_cancer")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if min(workers) < 1:
        parser.error(f"--workers {args.workers!r}: each count must be >= 1")

    import ray

    from etpo_gym.distributed import RayVectorEnv

    root = Path(tempfile.mkdtemp(prefix="etpo-ray-"))
    os.environ["RAY_TMPDIR"] = str(root)
    code = _code(args.task)
    env_kwargs = dict(task=args.task, sandbox="local", max_steps=1)
    same_step = {"autoreset_mode": AutoresetMode.SAME_STEP}
    rows = []
    try:
        for n in workers:

            def local_vec(k: int) -> Any:
                return gym.make_vec(
                    "DataSci-v0", num_envs=k, vectorization_mode="async",
                    vector_kwargs=same_step, **env_kwargs,
                )  # fmt: skip

            def ray_vec(k: int) -> Any:
                return RayVectorEnv(
                    "DataSci-v0", k, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs
                )

            cluster = _cluster(n)
            work = Path(tempfile.mkdtemp(prefix="etpo-ray-bench-"))
            try:
                a = vector_rate(local_vec, n, args.episodes, code)
                b = vector_rate(ray_vec, n, args.episodes, code)
                rows.append(("vector env", n, a, b))
                print(f"vector env  N={n}: local {a:.2f} ep/s, Ray {b:.2f} ep/s", flush=True)
                c = bench_rate(work / "local", args.task, args.episodes, jobs=n)
                d = bench_rate(work / "ray", args.task, args.episodes, ray=cluster.address)
                rows.append(("bench", n, c, d))
                print(f"bench       N={n}: local {c:.2f} ep/s, Ray {d:.2f} ep/s", flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
                ray.shutdown()
                cluster.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"\n{args.episodes} episodes of the logreg code on {args.task} per measurement "
        f"(local kernels, {os.cpu_count()} cores; Ray: a head and a worker node on this machine "
        "offering N logical CPUs in all)\n"
    )
    print("| what | workers | local pool (ep/s) | Ray (ep/s) | Ray / local |")
    print("|---|---:|---:|---:|---:|")
    for what, n, a, b in rows:
        print(f"| {what} | {n} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    for what in ("vector env", "bench"):
        ratios = [b / a for w, _, a, b in rows if w == what]
        print(f"{what}: Ray / local, median over worker counts: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
