"""What a fresh container per kernel would cost the paper protocol on Docker: pods vs ``reuse=False``.

``DataSciPaper-v0`` runs every step as 5 splits, each in a fresh kernel. On Docker those kernels
are forked in a pod wiped between them (``reuse=True``, the default), whose counters (pid numbers,
inode numbers, IPC ids) outlive a kernel: a covert channel of a few numbers between consecutive
splits (``docs/docker.md``). ``reuse=False`` closes it with a new container per kernel. This
measures both side by side, in turns, on one env loop: wall time per episode of one honest step
(reset and 5 splits), and the reward (it must be equal).

    nice -n 15 python benchmarks/paper_protocol_pods.py [--rounds 2] [--task breast_cancer]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import etpo_gym  # noqa: F401 - registers the envs

HONEST = """\
def build_model(x_train, y_train):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
"""


def _episode(env: gym.Env, seed: int) -> tuple[float, float, str]:
    started = time.perf_counter()
    env.reset(seed=seed)
    _, reward, _, _, info = env.step(HONEST)
    return time.perf_counter() - started, float(reward), str(info["status"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="episodes per mode, in turns")
    parser.add_argument("--task", default="breast_cancer")
    args = parser.parse_args()
    modes = {"pods (reuse=True)": True, "container per kernel (reuse=False)": False}
    envs = {
        name: gym.make(
            "DataSciPaper-v0",
            task=args.task,
            sandbox="docker",
            timeout=300,
            sandbox_kwargs={"reuse": reuse},
        )
        for name, reuse in modes.items()
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    rewards: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for env in envs.values():  # warm-up: the first pod or container, not counted
            _episode(env, 0)
        for round_ in range(args.rounds):
            for name, env in envs.items():
                seconds, reward, status = _episode(env, 100 + round_)
                times[name].append(seconds)
                rewards[name].append(reward)
                print(f"round {round_} {name}: {seconds:.1f} s, reward {reward:.4f} ({status})")
    finally:
        for env in envs.values():
            env.close()
    print(f"\npaper protocol on Docker, task {args.task}, one honest step of 5 splits per episode")
    print(f"{'mode':<38}{'median s/episode':>18}{'rewards':>30}")
    for name in modes:
        shown = ", ".join(f"{r:.4f}" for r in rewards[name])
        print(f"{name:<38}{statistics.median(times[name]):>18.1f}{shown:>30}")
    ratio = statistics.median(times["container per kernel (reuse=False)"]) / statistics.median(
        times["pods (reuse=True)"]
    )
    print(f"reuse=False / reuse=True: {ratio:.2f}x wall time per episode")


if __name__ == "__main__":
    main()
