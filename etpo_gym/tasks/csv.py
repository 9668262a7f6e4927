"""Tasks from a user's CSV file: ``get_task("data.csv", target="label", drop=["id"])``.

Types come from :func:`pandas.read_csv`. Features whose columns are all numeric and complete
become a float64 array; anything else (strings, booleans, missing values) is passed on as a
DataFrame, as read. The target decides the task type: booleans, strings and integer values with
at most :data:`MAX_CLASSES` distinct values make a classification task (codes ``0..k-1`` in
sorted label order); other numbers make a regression task scored by R^2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import Dataset, Task

MAX_CLASSES = 20
MIN_ROWS = 20


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


def _label_text(value: object) -> str:
    # 1.0 read from a column with gaps is the label "1", not "1.0".
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _encode_target(column: pd.Series, where: str) -> tuple[np.ndarray, list[str] | None, str, str]:
    """``(y, class_names, task_type, metric)`` of a target column without missing values."""
    values = column.to_numpy()
    distinct = pd.unique(values)
    is_bool = pd.api.types.is_bool_dtype(column) or all(
        isinstance(v, bool | np.bool_) for v in distinct
    )
    is_number = not is_bool and pd.api.types.is_numeric_dtype(column)
    integral = is_number and bool(np.all(np.mod(values.astype(np.float64), 1.0) == 0.0))
    classification = is_bool or not is_number or (integral and len(distinct) <= MAX_CLASSES)
    if not classification:
        y = values.astype(np.float64)
        if np.unique(y).size < 2:
            raise TaskError(
                f"{where}: the target has a single value, {float(y[0])!r}; nothing to predict"
            )
        return y, None, "regression", "r2"
    if not is_bool and not is_number and len(distinct) > MAX_CLASSES:
        raise TaskError(
            f"{where}: the target has {len(distinct)} distinct non-numeric values; a "
            f"classification target may have at most {MAX_CLASSES} classes"
        )
    labels = sorted(distinct, key=(lambda v: float(v)) if (is_number or is_bool) else str)
    if len(labels) < 2:
        raise TaskError(
            f"{where}: the target has a single class, {_label_text(labels[0])!r}; "
            "a classification task needs at least 2"
        )
    codes = {label: i for i, label in enumerate(labels)}
    y = np.array([codes[v] for v in values], dtype=np.int64)
    counts = np.bincount(y, minlength=len(labels))
    rare = [_label_text(labels[i]) for i in np.flatnonzero(counts < 2)]
    if rare:
        raise TaskError(
            f"{where}: class {', '.join(map(repr, rare))} has fewer than 2 rows; every class "
            "needs at least 2 so that the train/eval split can hold it on both sides"
        )
    task_type = "binary" if len(labels) == 2 else "multiclass"
    return y, [_label_text(label) for label in labels], task_type, "roc_auc"


def _features(frame: pd.DataFrame) -> np.ndarray | pd.DataFrame:
    numeric = all(
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        for dtype in frame.dtypes
    )
    if numeric and not frame.isna().to_numpy().any():
        return np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
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
    if not isinstance(target, str) or not target:
        raise TaskError(f"{where}: target={target!r}; pass the name of the column to predict")
    frame = _read(p)
    available = [str(c) for c in frame.columns]
    if target not in frame.columns:
        raise TaskError(f"{where}: target column {target!r} not found; columns: {available}")
    drop = [drop] if isinstance(drop, str) else list(drop or [])
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise TaskError(f"{where}: drop column(s) {missing} not found; columns: {available}")
    if target in drop:
        raise TaskError(f"{where}: the target column {target!r} is also listed in drop={drop}")
    features = [c for c in frame.columns if c != target and c not in drop]
    if not features:
        raise TaskError(f"{where}: no feature columns left after removing target and drop")

    frame = frame[frame[target].notna()].reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise TaskError(
            f"{where}: {len(frame)} rows with a target value; at least {MIN_ROWS} are needed"
        )
    y, class_names, task_type, metric = _encode_target(frame[target], where)
    X = _features(frame[features])
    dataset = Dataset(X=X, y=y, feature_names=[str(c) for c in features], class_names=class_names)
    return Task(
        name=name or p.stem,
        description=f"{p.stem}: predict {target} from {len(features)} columns.",
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        loader=lambda: dataset,
        source="csv",
    )
