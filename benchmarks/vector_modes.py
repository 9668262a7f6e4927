"""Sync vs async vector envs of DataSci-v0: seconds per vector step, measured side by side.

    python benchmarks/vector_modes.py [--num-envs 4] [--rounds 3] [--steps 4] [--sandbox local]

Each round builds both vector envs (``gym.make_vec`` with default arguments: shared memory for
async) and times ``--steps`` vector steps of each, in turns, so that both see the same machine
load. A step runs a 100-tree random forest in every env (the kind of body the ETPO starter writes);
episodes end on success and the vector env resets them in the same step, as in the trainer.
Prints the median seconds per vector step of each mode and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import etpo_gym  # noqa: F401 - registers the envs

BODY = """\
from sklearn.ensemble import RandomForestClassifier
model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(x_train, y_train)
"""


def time_steps(mode: str, args: argparse.Namespace, seed: int) -> list[float]:
    """Seconds of each vector step (after one reset) of a fresh vector env in ``mode``."""
    envs = gym.make_vec(
        "DataSci-v0",
        num_envs=args.num_envs,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        task=args.task,
        sandbox=args.sandbox,
    )
    try:
        envs.reset(seed=[seed + i for i in range(args.num_envs)])
        times = []
        for _ in range(args.steps):
            started = time.perf_counter()
            _, rewards, _, _, _ = envs.step([BODY] * args.num_envs)
            times.append(time.perf_counter() - started)
            assert (rewards > 0).all(), rewards
        return times
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--task", default="skill_interactions")
    parser.add_argument("--sandbox", default="local")
    args = parser.parse_args()
    seen: dict[str, list[float]] = {"sync": [], "async": []}
    for r in range(args.rounds):
        order = ("sync", "async") if r % 2 == 0 else ("async", "sync")
        for mode in order:
            seen[mode] += time_steps(mode, args, seed=100 * r)
    sync, async_ = statistics.median(seen["sync"]), statistics.median(seen["async"])
    print(
        f"{args.num_envs} envs, {args.task}, sandbox {args.sandbox}, "
        f"{len(seen['sync'])} vector steps per mode"
    )
    print(f"sync : median {sync:.2f} s per vector step")
    print(f"async: median {async_:.2f} s per vector step ({sync / async_:.2f}x faster)")


if __name__ == "__main__":
    main()
