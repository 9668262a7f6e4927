"""Named, versioned task suites.

A suite's version names its exact content: each task's data (``dataset_digest``), metric and
split protocol enter :func:`suite_digest`, and the digest recorded here must match it (a test
checks), so changing a task forces a new suite version.

Suites: ``core-v0`` (the ten core tasks), ``smoke-v0``, ``real-v0`` (the three shared real CSVs),
``real-v1`` (the curated real tasks of ``etpo_gym/tasks/real_tasks.toml``), its fixed held-out
split ``real-v1-train`` / ``real-v1-test`` (disjoint datasets and source packages), and one suite
per skill family, ``real-v1-<family>``. ``real`` names the latest full real suite.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from etpo_gym.errors import ConfigError
from etpo_gym.tasks import get_task, real, real_task_names, task_names
from etpo_gym.tasks.base import Task
from etpo_gym.tasks.synthetic import dataset_digest

SPLIT = "holdout 70/30 stratified, split seed = episode seed"
#: The real CSVs of ``real-v0`` (see :func:`etpo_gym.tasks.real.real_data_dir`), at import time.
REAL_DATA = real.real_data_dir()


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
        path = (data_dir or real.real_data_dir()) / self.csv
        if not path.is_file():
            raise ConfigError(
                f"suite task {self.name!r} needs {self.csv} in {path.parent} (the shared real "
                "datasets, not shipped): set ETPO_REAL_DATA to the folder that holds it"
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


# Task object -> dataset digest: suites share tasks, and hashing a table takes a while.
_DIGESTS: dict[Task, str] = {}


def suite_digest(tasks: tuple[TaskSpec, ...], data_dir: Path | None = None) -> str:
    """SHA-256 (first 16 hex) over each task's name, data, metric and split protocol."""
    h = hashlib.sha256(SPLIT.encode())
    for spec in tasks:
        kwargs = spec.env_kwargs(data_dir)
        task = get_task(kwargs["task"], target=kwargs.get("target"), drop=kwargs.get("drop"))
        if task not in _DIGESTS:
            _DIGESTS[task] = dataset_digest(task.data)
        h.update(f"{spec.name}|{task.metric}|{task.task_type}|".encode())
        h.update(_DIGESTS[task].encode())
    return h.hexdigest()[:16]


def _real_v1(split: str | None = None, family: str | None = None) -> tuple[TaskSpec, ...]:
    names = set(real_task_names())
    return tuple(
        TaskSpec(e.name)
        for e in real.entries()
        if e.name in names
        and (split is None or e.split == split)
        and (family is None or family in e.families)
    )


_CORE = tuple(TaskSpec(name) for name in task_names())
_REAL_V0 = tuple(
    TaskSpec(e.name, e.csv_file, e.target, tuple(e.drop)) for e in real.entries() if e.csv_file
)
_SMOKE = (TaskSpec("breast_cancer"), TaskSpec("skill_interactions"))

_FAMILY_DIGESTS = {
    "missing": "f1e07d4ac1fb373c",
    "high_cardinality": "f968b24f4d64c053",
    "dates": "e14fbc3b2b9d719e",
    "imbalance": "fe1f64f5b22cec27",
    "small_n": "e5dda542e9f1ecce",
}
#: Every suite version by id (``real-v1-train``).
ALL_SUITES: dict[str, Suite] = {
    s.id: s
    for s in (
        Suite("core", "v0", _CORE, "24871cc1da65f377"),
        Suite("real", "v0", _REAL_V0, "2a611c70bcbbe16a"),
        Suite("smoke", "v0", _SMOKE, "109991d43ce3aadd"),
        Suite("real", "v1", _real_v1(), "ecea8478032f8d8d"),
        Suite("real", "v1-train", _real_v1(split="train"), "80fee22a69bb7a19"),
        Suite("real", "v1-test", _real_v1(split="test"), "b781e3bfbf500896"),
        *(
            Suite("real", f"v1-{family}", _real_v1(family=family), digest)
            for family, digest in _FAMILY_DIGESTS.items()
        ),
    )
}
#: The latest full suite of each name (``real`` is ``real-v1``).
SUITES: dict[str, Suite] = {
    "core": ALL_SUITES["core-v0"],
    "real": ALL_SUITES["real-v1"],
    "smoke": ALL_SUITES["smoke-v0"],
}


def get_suite(spec: str) -> Suite:
    """A suite by id (``real-v1-train``) or name (``real``: its latest version), or a
    comma-separated task list (an ad-hoc suite)."""
    if spec in ALL_SUITES:
        return ALL_SUITES[spec]
    if spec in SUITES:
        return SUITES[spec]
    if "-v" in spec and spec.split("-v")[0] in SUITES and "," not in spec:
        raise ConfigError(f"suite {spec!r}: unknown version; known suites: {', '.join(ALL_SUITES)}")
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--tasks {spec!r}: give a suite ({', '.join(ALL_SUITES)}) or task names")
    specs = []
    for name in names:
        get_task(name)  # raises TaskError naming the unknown task and the known ones
        specs.append(TaskSpec(Path(name).stem if name.endswith(".csv") else name))
        if name.endswith(".csv"):
            raise ConfigError(f"--tasks {name!r}: CSV tasks enter a leaderboard through a suite")
    tasks = tuple(specs)
    return Suite("custom", "v0", tasks, suite_digest(tasks))
