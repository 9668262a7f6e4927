"""Tasks from a user's CSV file: ``get_task("data.csv", target="label", drop=["id"])``.

Types come from :func:`pandas.read_csv`; the rest of the type inference (features, target, task
type, errors) is :mod:`etpo_gym.tasks.frame`, shared by every table source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import Task
from etpo_gym.tasks.frame import MAX_CLASSES, MIN_ROWS, dataset_from_frame, normalize_frame

__all__ = ["MAX_CLASSES", "MIN_ROWS", "load_csv_task"]


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise TaskError(f"CSV file {str(path)!r} does not exist")
    if p.is_dir():
        raise TaskError(f"{str(path)!r} is a directory; expected a .csv file")
    if p.suffix.lower() != ".csv":
        raise TaskError(f"{str(path)!r} is not a .csv file (suffix {p.suffix!r}); expected *.csv")
    return p


def _read(p: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise TaskError(f"CSV file {str(p)!r} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TaskError(f"CSV file {str(p)!r} cannot be parsed: {exc}") from None
    if frame.empty:
        raise TaskError(f"CSV file {str(p)!r} has a header but no data rows")
    return frame


def load_csv_task(
    path: str | os.PathLike[str],
    target: str,
    drop: Sequence[str] | None = None,
    name: str | None = None,
) -> Task:
    """Build a task from a CSV file (read now; errors are raised here, not on first use).

    Args:
        path: a ``.csv`` file with a header row.
        target: the column to predict; rows where it is missing are dropped.
        drop: columns that are not features (ids, free text, leaks).
        name: the task name; the file stem by default.

    Raises:
        TaskError: the file is missing, not a CSV, empty or unparsable; ``target`` or a ``drop``
            column is not in the file; the target has a single class, a class with fewer than 2
            rows, or too many string values; fewer than ``MIN_ROWS`` rows are left.
    """
    p = _check_path(path)
    where = f"CSV task {p.name!r}"
    frame = normalize_frame(_read(p), where)
    dataset, task_type, metric = dataset_from_frame(frame, target, drop or (), where=where)
    return Task(
        name=name or p.stem,
        description=f"{p.stem}: predict {target} from {len(dataset.feature_names)} columns.",
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        loader=lambda: dataset,
        source="csv",
    )
