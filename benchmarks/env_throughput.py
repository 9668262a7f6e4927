"""Per-step cost of running agent code: in-process ``exec`` versus the sandboxes, in one run.

Prints, for the same code on the same split, medians of
(a) in-process ``exec`` — how the ETPO paper's env runs code: the speed floor, zero isolation;
(b) the local kernel sandbox (``DataSci-v0`` with ``sandbox="local"``), and, with ``--docker``,
(c) the Docker sandbox: cold start to first execute, episode reset (a new seed, and an RL loop's
seedless reset served by the warm pool), trivial-cell round trip, a trivial step, a small
scikit-learn fit step (a few ms of fitting) and a random-forest step (about 0.1 s of fitting),
timed once the pool is idle, each with its ratio to (a) and, for Docker,
to (b). With ``--docker`` it then prints the episode throughput of N = 1, 2, 4 Docker envs in an
``AsyncVectorEnv`` (reset + one small fit per episode) and its scaling relative to N = 1.
Trivial round trips and steps are timed in turns (exec, local, docker, exec, ...), so that the
machine's changing load hits all alike; ``exec`` runs BLAS with one thread, like the kernels.

    python benchmarks/env_throughput.py [--reps 15] [--task breast_cancer]
        [--docker] [--episodes 6] [--parallel 1,2,4]
    python benchmarks/env_throughput.py --notebook [--sandbox local] [--batch 24]

``--notebook`` measures, instead, the LLM-trainer paths (issue #10): cells/s of
``DataSciNotebook-v0`` (a trivial cell and a small pandas cell in the episode's kernel) and
rewards/s of ``etpo_gym.score_batch`` on a warm ``ScoringPool`` of 1, 2 and 4 workers (GRPO-like
batches: groups of 4 completions per seed, a small-fit body each, cold starts not timed).

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
    # About 0.1 s of fitting: the kind of fit the prototype's figures compare (fixed per-step
    # costs of a few ms weigh little against it).
    "forest-fit": (
        "from sklearn.ensemble import RandomForestClassifier\n"
        "model = RandomForestClassifier(n_estimators=100, random_state=0).fit(x_train, y_train)\n"
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
    """Cold start and reset times of one backend, in ms."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    env = gym.make("DataSci-v0", task=task_name, sandbox=backend)
    env.reset(seed=0)
    sandbox = env.unwrapped.sandbox
    sandbox.execute("pass")
    figures["cold start to first execute"] = 1000 * (time.perf_counter() - start)
    try:
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
    finally:
        env.close()
    return figures


def interleaved_figures(
    backends: list[str], task_name: str, reps: int
) -> dict[str, dict[str, float]]:
    """Trivial round trip and step times, in ms, of in-process ``exec`` and each backend, taken
    in turns (exec, local, docker, exec, ...) so that a change in the machine's load hits all
    alike; timed once every sandbox's pool has finished pre-starting."""
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
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--task", default="breast_cancer")
    parser.add_argument("--docker", action="store_true", help="also measure the Docker backend")
    parser.add_argument("--episodes", type=int, default=6, help="timed episodes per Docker env")
    parser.add_argument("--parallel", default="1,2,4", help="Docker env counts for throughput")
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

    backends = ["local"] + (["docker"] if args.docker else [])
    results = {name: env_figures(name, args.task, args.reps) for name in backends}
    with threadpool_limits(1):  # the kernels run BLAS with one thread: so does exec
        turns = interleaved_figures(backends, args.task, args.reps)
    exec_ms = turns.pop("exec")
    for name in backends:
        results[name].update(turns[name])

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
