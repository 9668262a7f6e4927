"""A structured description of a task's data (``info["schema"]`` on ``reset``).

Computed from the training rows only: the evaluation labels are never described, not even their
balance. Every value is a plain JSON type, so the schema can be logged or put in a dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etpo_gym.tasks.base import Task

#: Most frequent values listed for a non-numeric column.
MAX_LEVELS_SHOWN = 5


def _column(name: str, col: pd.Series) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": str(name),
        "dtype": str(col.dtype),
        "missing": int(col.isna().sum()),
    }
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        present = col.dropna()
        entry["kind"] = "numeric"
        entry["min"] = float(present.min()) if len(present) else None
        entry["max"] = float(present.max()) if len(present) else None
        entry["distinct"] = int(present.nunique())
    else:
        counts = col.dropna().astype(str).value_counts()
        entry["kind"] = "categorical"
        entry["distinct"] = len(counts)
        entry["top_levels"] = [str(level) for level in counts.index[:MAX_LEVELS_SHOWN]]
    return entry


def data_schema(task: Task, train_idx: np.ndarray, eval_idx: np.ndarray) -> dict[str, Any]:
    """Columns (dtype, missing count, range or levels), the target (classes and their balance,
    or its range) and the row counts of a split, from the training rows.

    Returns:
        ``{"task", "task_type", "metric", "input", "rows": {"train", "eval"}, "columns": [...],
        "target": {...}}``; each column is ``{"name", "dtype", "missing", "kind", "distinct"}``
        plus ``"min"``/``"max"`` (numeric) or ``"top_levels"`` (categorical).
    """
    data = task.data
    x_train, y_train = data.rows(train_idx)
    frame = (
        x_train
        if isinstance(x_train, pd.DataFrame)
        else pd.DataFrame(x_train, columns=data.feature_names)
    )
    if task.task_type == "regression":
        y = np.asarray(y_train, dtype=float)
        target: dict[str, Any] = {
            "kind": "continuous",
            "min": float(y.min()),
            "max": float(y.max()),
            "mean": float(y.mean()),
        }
    else:
        names = list(data.class_names or [])
        counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(names))
        target = {
            "kind": "classes",
            "classes": [{"code": i, "label": str(name)} for i, name in enumerate(names)],
            "balance": [round(float(c) / max(1, int(counts.sum())), 4) for c in counts],
        }
    return {
        "task": task.name,
        "task_type": task.task_type,
        "metric": task.metric,
        "input": "DataFrame" if data.is_frame else "ndarray",
        "rows": {"train": len(train_idx), "eval": len(eval_idx)},
        "columns": [_column(name, frame[name]) for name in frame.columns],
        "target": target,
    }
