"""The task suite: built-in scikit-learn tasks, synthetic skill tasks and CSV tasks.

``list_tasks()`` gives the built-in tasks in a stable order (scikit-learn ones, then the
synthetic skill tasks); ``get_task(name)`` gives one by name, or builds one from a CSV file when
``name`` is a path ending in ``.csv`` (``target`` is then required). Task objects are cached, so
each dataset is built once per process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.tasks.base import Dataset, Task, holdout_split
from etpo_gym.tasks.builtin import sklearn_tasks
from etpo_gym.tasks.csv import load_csv_task
from etpo_gym.tasks.synthetic import dataset_digest, synthetic_tasks

SOURCES: tuple[str, ...] = ("sklearn", "synthetic")

_BUILTIN: dict[str, Task] = {task.name: task for task in [*sklearn_tasks(), *synthetic_tasks()]}
# (resolved path, size, mtime, target, drop) -> Task: an edited file is read again.
_CSV_CACHE: dict[tuple[object, ...], Task] = {}


def task_names() -> list[str]:
    """Names of the built-in tasks, in the order of :func:`list_tasks`."""
    return list(_BUILTIN)


def list_tasks(source: str | None = None) -> list[Task]:
    """The built-in tasks in a stable order, optionally only those of one ``source``.

    Args:
        source: ``"sklearn"`` or ``"synthetic"``; ``None`` for all.
    """
    if source is not None and source not in SOURCES:
        raise ConfigError(f"source={source!r} is not one of {SOURCES} (or None for all)")
    return [task for task in _BUILTIN.values() if source is None or task.source == source]


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(".csv") or os.sep in name or "/" in name or Path(name).exists()


def get_task(
    name: str | os.PathLike[str],
    *,
    target: str | None = None,
    drop: Sequence[str] | None = None,
) -> Task:
    """A built-in task by name, or a task built from a CSV file.

    Args:
        name: a name from :func:`task_names`, or a path to a ``.csv`` file.
        target: the column to predict (CSV tasks only; required for them).
        drop: columns to leave out of the features (CSV tasks only).

    Raises:
        TaskError: unknown name (the message lists the known ones), or a CSV problem (see
            :func:`~etpo_gym.tasks.csv.load_csv_task`).
    """
    try:
        text = os.fspath(name)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise TaskError(f"a task is named by a string or a path; got {name!r}")
    if text in _BUILTIN:
        if target is not None or drop:
            raise TaskError(
                f"task {text!r} is built in; target={target!r} and drop={drop!r} only apply to "
                "CSV tasks"
            )
        return _BUILTIN[text]
    if not _looks_like_path(text):
        raise TaskError(
            f"unknown task {text!r}; known tasks: {', '.join(_BUILTIN)} "
            "(or pass a path to a .csv file with target=...)"
        )
    if target is None:
        raise TaskError(
            f"CSV task {text!r} needs target=<column to predict> (CLI: --target COLUMN)"
        )
    drop_key = (drop,) if isinstance(drop, str) else tuple(drop or ())
    path = Path(text).expanduser()
    try:
        stat = path.stat()
        key: tuple[object, ...] = (
            path.resolve(),
            stat.st_size,
            stat.st_mtime_ns,
            target,
            drop_key,
        )
    except OSError:
        key = ()  # missing path: load_csv_task raises the clear error
    if key and key in _CSV_CACHE:
        return _CSV_CACHE[key]
    task = load_csv_task(path, target=target, drop=list(drop_key))
    if key:
        _CSV_CACHE[key] = task
    return task


__all__ = [
    "SOURCES",
    "Dataset",
    "Task",
    "dataset_digest",
    "get_task",
    "holdout_split",
    "list_tasks",
    "load_csv_task",
    "task_names",
]
