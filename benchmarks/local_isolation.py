"""Cost of the local sandbox's isolation levels, side by side in one run.

For ``isolation="none"`` and ``"namespaces"``, interleaved (so machine load hits both alike):

* **start**: ``LocalSandbox.start()`` — a cold kernel (nothing pre-started);
* **reset**: ``reset(seed)`` without a pre-started kernel (a fresh kernel every time);
* **reset (prepared)**: ``prepare(seed)`` then, after a pause, ``reset(seed)``: the swap only;
* **step**: ``execute`` of a small cell and of a logistic-regression fit.

Prints medians in milliseconds and the ratio namespaces / none. Run with ``nice -n 15``::

    python benchmarks/local_isolation.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from etpo_gym.sandbox.confine import namespaces_status
from etpo_gym.sandbox.local import LocalSandbox

FIT = """
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
X, y = make_classification(n_samples=500, n_features=20, random_state=0)
LogisticRegression(max_iter=200).fit(X, y).score(X, y)
"""


def _ms(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per figure and level")
    args = parser.parse_args()
    ok, reason = namespaces_status()
    if not ok:
        raise SystemExit(f"namespaces cannot be used here: {reason}")
    levels = ("none", "namespaces")
    figures: dict[str, dict[str, list[float]]] = {
        level: {
            "start": [],
            "reset": [],
            "reset (prepared)": [],
            "step (1 + 1)": [],
            "step (fit)": [],
        }
        for level in levels
    }
    for round_ in range(args.rounds):
        for level in levels:
            sb = LocalSandbox(isolation=level, pool_size=1, timeout=120)
            try:
                figures[level]["start"].append(_ms(sb.start))
                figures[level]["reset"].append(_ms(sb.reset, seed=100 + round_))
                sb.prepare(1000 + round_)
                time.sleep(3)  # the spare starts in the background meanwhile
                figures[level]["reset (prepared)"].append(_ms(sb.reset, seed=1000 + round_))
                for _ in range(3):
                    figures[level]["step (1 + 1)"].append(_ms(sb.execute, "1 + 1"))
                    figures[level]["step (fit)"].append(_ms(sb.execute, FIT))
            finally:
                sb.close()
    print(f"local sandbox isolation cost, medians in ms ({args.rounds} rounds, interleaved)")
    print(f"{'':18} {'none':>10} {'namespaces':>11} {'ratio':>7}")
    for name in figures["none"]:
        plain = statistics.median(figures["none"][name])
        ns = statistics.median(figures["namespaces"][name])
        print(f"{name:18} {plain:10.1f} {ns:11.1f} {ns / plain:7.2f}")


if __name__ == "__main__":
    main()
