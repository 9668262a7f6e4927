"""TEMPORARY lead shim so the env can be tested; the tasks helper replaces this whole file."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import Dataset, Task


def _sk(name):
    def load():
        b = getattr(datasets, f"load_{name}")()
        return Dataset(
            X=b.data.astype(float),
            y=b.target.astype(np.int64),
            feature_names=list(map(str, b.feature_names)),
            class_names=[str(c) for c in b.target_names],
        )

    return load


_TASKS = {
    "breast_cancer": Task(
        "breast_cancer",
        "Tumour measurements; predict malignant.",
        "binary",
        "roc_auc",
        _sk("breast_cancer"),
    ),
    "wine": Task(
        "wine", "Wine chemistry; predict the cultivar.", "multiclass", "roc_auc", _sk("wine")
    ),
}


def list_tasks(source=None):
    return list(_TASKS.values())


def task_names():
    return list(_TASKS)


def get_task(name, *, target=None, drop=None):
    try:
        return _TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}") from None
