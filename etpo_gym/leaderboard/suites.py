"""Named, versioned task suites.

A suite's version names its exact content: each task's data (``dataset_digest``), metric and
split protocol enter :func:`suite_digest`, and the digest recorded here must match it (a test
checks), so changing a task forces a new suite version.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from etpo_gym.errors import ConfigError
from etpo_gym.tasks import get_task, task_names
from etpo_gym.tasks.synthetic import dataset_digest

SPLIT = "holdout 70/30 stratified, split seed = episode seed"
#: The real CSVs of ``real-v0``: ``$ETPO_REAL_DATA``, else ``shared/data/real`` beside the checkout.
REAL_DATA = Path(
    os.environ.get("ETPO_REAL_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
)


@dataclass(frozen=True)
class TaskSpec:
    """A suite entry: a built-in task name, or a CSV file with its target and dropped columns."""

    name: str
    csv: str | None = None
    target: str | None = None
    drop: tuple[str, ...] = ()

    def env_kwargs(self, data_dir: Path | None = None) -> dict:
        if self.csv is None:
            return {"task": self.name}
        path = (data_dir or REAL_DATA) / self.csv
        if not path.is_file():
            raise ConfigError(
                f"suite task {self.name!r} needs {self.csv} in {path.parent} (the shared real "
                "datasets), which is missing"
            )
        return {"task": str(path), "target": self.target, "drop": list(self.drop)}


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    tasks: tuple[TaskSpec, ...]
    digest: str
    """recorded :func:`suite_digest`; a mismatch means the suite changed without a new version"""

    @property
    def id(self) -> str:
        return f"{self.name}-{self.version}"


def suite_digest(tasks: tuple[TaskSpec, ...], data_dir: Path | None = None) -> str:
    """SHA-256 (first 16 hex) over each task's name, data, metric and split protocol."""
    h = hashlib.sha256(SPLIT.encode())
    for spec in tasks:
        kwargs = spec.env_kwargs(data_dir)
        task = get_task(kwargs["task"], target=kwargs.get("target"), drop=kwargs.get("drop"))
        h.update(f"{spec.name}|{task.metric}|{task.task_type}|".encode())
        h.update(dataset_digest(task.data).encode())
    return h.hexdigest()[:16]


_CORE = tuple(TaskSpec(name) for name in task_names())
_REAL = (
    TaskSpec("kidney_stone", "kidney_stone.csv", "target", ("id",)),
    TaskSpec("pharyngitis", "pharyngitis.csv", "radt", ("number",)),
    TaskSpec("spaceship_titanic", "spaceship_titanic.csv", "Transported", ("PassengerId", "Name")),
)
_SMOKE = (TaskSpec("breast_cancer"), TaskSpec("skill_interactions"))

SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("core", "v0", _CORE, "24871cc1da65f377"),
        Suite("real", "v0", _REAL, "2a611c70bcbbe16a"),
        Suite("smoke", "v0", _SMOKE, "109991d43ce3aadd"),
    )
}


def get_suite(spec: str) -> Suite:
    """``core-v0`` / ``core`` (latest version), or a comma-separated task list (an ad-hoc suite)."""
    for suite in SUITES.values():
        if spec in (suite.id, suite.name):
            return suite
    if spec.count("-v") == 1 and spec.split("-v")[0] in SUITES:
        raise ConfigError(
            f"suite {spec!r}: unknown version; known suites: {', '.join(s.id for s in SUITES.values())}"
        )
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--tasks {spec!r}: give a suite ({', '.join(SUITES)}) or task names")
    specs = []
    for name in names:
        get_task(name)  # raises TaskError naming the unknown task and the known ones
        specs.append(TaskSpec(Path(name).stem if name.endswith(".csv") else name))
        if name.endswith(".csv"):
            raise ConfigError(f"--tasks {name!r}: CSV tasks enter a leaderboard through a suite")
    tasks = tuple(specs)
    return Suite("custom", "v0", tasks, suite_digest(tasks))
