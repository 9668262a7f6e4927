"""Cost of isolated episodes and steps: in-process ``exec`` versus the sandboxes, in one run.

Prints, for the same code on the same split:

1. **Fresh isolated episodes** (with ``--docker``), before and after Docker pods, side by side:
   ``before`` is ``reuse=False`` (a new container per kernel, as the Docker sandbox did before
   pods), ``after`` the default (a kernel forked in a wiped pod), ``server`` the default with its
   pods taken from a pod server that this benchmark starts (``etpo-gym sandbox serve``; every
   cold start begins with all its pods ready, as on a machine where one runs). For each: cold start (``gym.make``
   to the first execute, and the pod's imports within it), cold start to the first reward
   (``gym.make`` to a small-fit step's result; medians of ``--rounds``), sustained episodes per
   second of one env loop
   (each episode a seedless reset, as an RL loop does, and one small scikit-learn fit; blocks of
   ``--episodes`` taken in turns, before, after, before, ...) and the CPU seconds per episode of
   this process and of the containers (their cgroups' CPU time), with the ratio after/before.
2. **Per step**: medians of (a) in-process ``exec`` — how the ETPO paper's env runs code: the
   speed floor, zero isolation; (b) the local kernel sandbox; (c) the Docker sandbox (pods):
   trivial-cell round trip, a trivial step, a small-fit step (a few ms of fitting) and a
   random-forest step (about 0.1 s of fitting), timed in turns (exec, local, docker, exec, ...)
   so that the machine's changing load hits all alike, each with its ratio to (a) and Docker's
   to (b); ``exec`` runs BLAS with one thread, like the kernels.

    python benchmarks/env_throughput.py [--reps 15] [--task breast_cancer]
        [--docker] [--episodes 10] [--rounds 3]
    python benchmarks/env_throughput.py --notebook [--sandbox local] [--batch 24]

``--notebook`` measures, instead, the LLM-trainer paths (issue #10): cells/s of
``DataSciNotebook-v0`` (a trivial cell and a small pandas cell in the episode's kernel) and
rewards/s of ``etpo_gym.score_batch`` on a warm ``ScoringPool`` of 1, 2 and 4 workers (GRPO-like
batches: groups of 4 completions per seed, a small-fit body each, cold starts not timed).

Targets (issue #8): at least 3 isolated episodes/s for one env loop on 2 cores, cold start at
most 0.8 s. Earlier targets (issue #3): warm small-fit step <= 1.5x in-process exec, trivial round
trip < 10 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
from threadpoolctl import threadpool_limits

import etpo_gym
from etpo_gym import prompts
from etpo_gym.scoring import score
from etpo_gym.tasks.base import holdout_split

SETTLE_S = 4.0
#: Docker modes: the settings that make each (and "server": pods from the benchmark's own pod
#: server, whose socket path is known at run time).
MODES: dict[str, dict[str, object]] = {
    "before": {"reuse": False, "pod_server": "off"},
    "after": {"reuse": True, "pod_server": "off"},
}
#: Pods the benchmark's pod server keeps ready: each cold start makes two envs, each of which
#: takes two pods (its first kernel's, and its pool's pre-started next kernel's).
SERVER_PODS = 4
SERVE = [sys.executable, "-m", "etpo_gym.sandbox.manage", "serve"]
TARGETS = {
    "trivial cell round trip": "< 10 ms",
    "step: small-fit": "<= 1.5x exec",
    "step: forest-fit": "<= 1.5x exec",
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
    # About 0.1 s of fitting: fixed per-step costs of a few ms weigh little against it.
    "forest-fit": (
        "from sklearn.ensemble import RandomForestClassifier\n"
        "model = RandomForestClassifier(n_estimators=100, random_state=0).fit(x_train, y_train)\n"
    ),
}


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


# -- fresh isolated episodes ---------------------------------------------------------------------


def _container_cpu_s(env: gym.Env) -> float:
    """CPU seconds the env's containers used so far (their cgroups, read on the host)."""
    return float(env.unwrapped.sandbox.backend.container_cpu_s())


def cold_start_s(task_name: str, settings: dict[str, object]) -> tuple[float, float, float]:
    """A new Docker env (a new sandbox, no pod yet): seconds from ``gym.make`` to its first
    execute, the pod's imports among them, and ``gym.make`` to its first small-fit step's
    reward (a second new env, so that neither start shares the other's pod)."""
    start = time.perf_counter()
    env = gym.make("DataSci-v0", task=task_name, sandbox="docker", sandbox_kwargs=settings)
    try:
        env.reset(seed=0)
        assert env.unwrapped.sandbox.execute("pass").ok
        ready = time.perf_counter() - start
        imports = max(env.unwrapped.sandbox.backend.pod_import_s(), default=float("nan"))
    finally:
        env.close()
    start = time.perf_counter()
    env = gym.make("DataSci-v0", task=task_name, sandbox="docker", sandbox_kwargs=settings)
    try:
        env.reset(seed=0)
        _, _, terminated, _, info = env.step(BODIES["small-fit"])
        assert terminated and info["status"] == "ok", info["error"]
        return ready, imports, time.perf_counter() - start
    finally:
        env.close()


def episode_block(env: gym.Env, episodes: int) -> tuple[float, float, float]:
    """Run ``episodes`` episodes (seedless reset + one small-fit step): wall seconds, CPU seconds
    of this process, CPU seconds of the containers."""
    body = BODIES["small-fit"]
    cpu0, box0 = time.process_time(), _container_cpu_s(env)
    start = time.perf_counter()
    for _ in range(episodes):
        env.reset()
        _, _, terminated, _, info = env.step(body)
        assert terminated and info["status"] == "ok", info["error"]
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu0, _container_cpu_s(env) - box0


class PodServerProcess:
    """``etpo-gym sandbox serve`` in a process of its own, at a private socket."""

    def __init__(self, pods: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="etpo-gym-bench-")
        self.path = os.path.join(self.dir, "pods.sock")
        self.process = subprocess.Popen(
            [*SERVE, "--socket", self.path, "--pods", str(pods)],
            stdout=subprocess.DEVNULL,
        )
        self.pods = pods

    def wait_ready(self) -> None:
        """Until all its pods are ready, then a settling pause (their starts used the CPU)."""
        from etpo_gym.errors import SandboxError
        from etpo_gym.sandbox.podserver import server_status

        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                sys.exit("env_throughput: the pod server exited")
            with contextlib.suppress(SandboxError):
                if server_status(self.path)["ready"] >= self.pods:
                    break
            if time.monotonic() > deadline:
                sys.exit("env_throughput: the pod server made no pods in 300 s")
            time.sleep(0.1)
        time.sleep(SETTLE_S)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh_episodes(task_name: str, episodes: int, rounds: int) -> dict[str, dict[str, float]]:
    """Cold start and sustained episodes/s of each Docker mode, taken in turns."""
    server = PodServerProcess(SERVER_PODS)
    try:
        return _fresh_episodes(task_name, episodes, rounds, server)
    finally:
        server.close()


def _fresh_episodes(
    task_name: str, episodes: int, rounds: int, server: PodServerProcess
) -> dict[str, dict[str, float]]:
    modes = {**MODES, "server": {"reuse": True, "pod_server": server.path}}
    colds: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, settings in modes.items():
            if mode == "server":
                server.wait_ready()
            colds[mode].append(cold_start_s(task_name, settings))
    envs = {
        mode: gym.make("DataSci-v0", task=task_name, sandbox="docker", sandbox_kwargs=settings)
        for mode, settings in modes.items()
    }
    totals = {mode: [0.0, 0.0, 0.0, 0] for mode in modes}
    try:
        for env in envs.values():
            episode_block(env, 2)  # warm-up: the first pods and kernels are not timed
        for _ in range(rounds):
            for mode, env in envs.items():
                wall, cpu, box = episode_block(env, episodes)
                total = totals[mode]
                total[0] += wall
                total[1] += cpu
                total[2] += box
                total[3] += episodes
    finally:
        for env in envs.values():
            env.close()
    figures = {}
    for mode, (wall, cpu, box, n) in totals.items():
        figures[mode] = {
            "cold start, s": statistics.median(c[0] for c in colds[mode]),
            "  of which the pod's imports, s": statistics.median(c[1] for c in colds[mode]),
            "cold start to 1st reward, s": statistics.median(c[2] for c in colds[mode]),
            "episodes/s, one env loop": n / wall,
            "CPU s/episode, this process": cpu / n,
            "CPU s/episode, containers": box / n,
        }
    return figures


# -- per step ----------------------------------------------------------------------------------


def interleaved_figures(
    backends: list[str], task_name: str, reps: int
) -> dict[str, dict[str, float]]:
    """Trivial round trip and step times, in ms, of in-process ``exec`` and each backend, taken
    in turns so that a change in the machine's load hits all alike; timed once every sandbox's
    pool has finished pre-starting."""
    envs = {name: gym.make("DataSci-v0", task=task_name, sandbox=name) for name in backends}
    figures: dict[str, dict[str, float]] = {name: {} for name in ["exec", *backends]}
    try:
        for env in envs.values():
            env.reset(seed=0)
        time.sleep(SETTLE_S)
        measures: dict[str, dict[str, Callable[[], object]]] = {
            "trivial cell round trip": {
                name: (lambda env=env: env.unwrapped.sandbox.execute("pass"))
                for name, env in envs.items()
            }
        }
        for label, body in BODIES.items():
            measures[f"step: {label}"] = {
                "exec": in_process_step(task_name, body),
                **{name: _step_fn(env, body) for name, env in envs.items()},
            }
        for measure, fns in measures.items():
            n = reps * 4 if measure.startswith("trivial") else reps
            times: dict[str, list[float]] = {name: [] for name in fns}
            for fn in fns.values():
                fn()  # warm-up
            for _ in range(n):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            for name, values in times.items():
                figures[name][measure] = 1000 * statistics.median(values)
    finally:
        for env in envs.values():
            env.close()
    return figures


# -- DataSciNotebook-v0 cells/s and score_batch rewards/s (issue #10) -------------------------

NOTEBOOK_CELLS = {
    "trivial cell": "x = 1",
    "pandas cell": "pd.DataFrame(x_train).describe().iloc[:2, :3]",
}


def notebook_cells_per_s(backend: str, task: str, reps: int) -> dict[str, float]:
    """Cells per second in one notebook episode's kernel, from the median cell time."""
    env = gym.make(
        "DataSciNotebook-v0", task=task, sandbox=backend, max_steps=10 * reps + 10, timeout=60.0
    )
    rates: dict[str, float] = {}
    try:
        env.reset(seed=0)
        time.sleep(SETTLE_S)  # let the pool finish pre-starting the next episode's kernel
        for label, cell in NOTEBOOK_CELLS.items():
            times = []
            for _ in range(reps * 4):
                start = time.perf_counter()
                _, _, _, _, info = env.step(cell)
                times.append(time.perf_counter() - start)
                assert info["status"] == "ok", info["error"]
            rates[label] = 1.0 / statistics.median(times)
    finally:
        env.close()
    return rates


def score_batch_rewards_per_s(backend: str, task: str, workers: int, batch: int) -> float:
    """Rewards per second of ``ScoringPool.score`` on a GRPO-like batch (groups of 4 codes per
    seed), on a pool warmed by one untimed batch."""
    body = BODIES["small-fit"]
    with etpo_gym.ScoringPool(workers, sandbox=backend, timeout=60.0) as pool:
        seeds = [i // 4 for i in range(batch)]
        pool.score([body] * batch, task, seeds)  # cold starts: not timed
        seeds = [1000 + i // 4 for i in range(batch)]
        start = time.perf_counter()
        results = pool.score([body] * batch, task, seeds)
        elapsed = time.perf_counter() - start
    assert all(r["status"] == "ok" for r in results), [r["error"] for r in results]
    return batch / elapsed


def notebook_section(args: argparse.Namespace) -> None:
    cells = notebook_cells_per_s(args.sandbox, args.task, args.reps)
    print(f"\nDataSciNotebook-v0 ({args.sandbox}), task {args.task}, {os.cpu_count()} cores\n")
    print(f"{'cell':<16} {'cells/s':>8}")
    for label, rate in cells.items():
        print(f"{label:<16} {rate:>8.1f}")
    print(f"\nscore_batch ({args.sandbox}), {args.batch} small-fit codes per batch\n")
    print(f"{'workers':>7} {'rewards/s':>10} {'x 1 worker':>11}")
    base_rate = None
    for workers in (1, 2, 4):
        rate = score_batch_rewards_per_s(args.sandbox, args.task, workers, args.batch)
        base_rate = base_rate or rate
        print(f"{workers:>7} {rate:>10.2f} {rate / base_rate:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="repetitions of each step timing")
    parser.add_argument("--task", default="breast_cancer")
    parser.add_argument("--docker", action="store_true", help="also measure the Docker backend")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per timed block")
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks (and cold starts)")
    parser.add_argument(
        "--notebook", action="store_true", help="instead: notebook cells/s, score_batch rewards/s"
    )
    parser.add_argument("--sandbox", default="local", help="backend of the --notebook figures")
    parser.add_argument("--batch", type=int, default=24, help="codes per score_batch call")
    args = parser.parse_args()
    if args.notebook:
        notebook_section(args)
        return
    if args.docker:
        from etpo_gym.sandbox.docker import docker_status

        ok, reason = docker_status()
        if not ok:
            sys.exit(f"env_throughput: the Docker sandbox cannot run here: {reason}")

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f} at the start, task {args.task}")
    if args.docker:
        fresh = fresh_episodes(args.task, args.episodes, args.rounds)
        print(
            f"\nfresh isolated episodes (Docker): before = reuse=False (a container per kernel), "
            f"after = pods, server = pods taken from a pod server (`etpo-gym sandbox serve`, "
            f"{SERVER_PODS} pods, all ready when a cold start begins); {args.rounds} x "
            f"{args.episodes} episodes per mode, in turns\n"
        )
        header = (
            f"{'measure':<30} {'before':>8} {'after':>8} {'server':>8} {'after/before':>12}"
            f" {'server/before':>13}  target"
        )
        print(header)
        print("-" * len(header))
        targets = {"cold start, s": "<= 0.8 s", "episodes/s, one env loop": ">= 3/s"}
        for measure in fresh["before"]:
            before, after = fresh["before"][measure], fresh["after"][measure]
            served = fresh["server"][measure]
            print(
                f"{measure:<30} {before:>8.3f} {after:>8.3f} {served:>8.3f}"
                f" {after / before:>12.2f} {served / before:>13.2f}  {targets.get(measure, '')}"
            )

    backends = ["local"] + (["docker"] if args.docker else [])
    with threadpool_limits(1):  # the kernels run BLAS with one thread: so does exec
        turns = interleaved_figures(backends, args.task, args.reps)
    exec_ms = turns.pop("exec")
    print(f"\nper step: {args.reps} repetitions (round trips: {4 * args.reps}), medians in ms\n")
    header = f"{'measure':<28} {'exec':>8}" + "".join(
        f" {name:>8} {'/exec':>6}" for name in backends
    )
    if args.docker:
        header += f" {'d/local':>7}  target"
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for measure in turns["local"]:
        base = exec_ms.get(measure)
        row = f"{measure:<28} {base if base is not None else nan:>8.1f}"
        for name in backends:
            value = turns[name][measure]
            row += f" {value:>8.1f} {value / base if base else nan:>6.2f}"
        if args.docker:
            ratio = turns["docker"][measure] / turns["local"][measure]
            row += f" {ratio:>7.2f}  {TARGETS.get(measure, '')}"
        print(row)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end ({Path(__file__).name})")


if __name__ == "__main__":
    main()
