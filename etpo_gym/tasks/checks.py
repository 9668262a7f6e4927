"""Leakage and signal checks of a task, with small in-process scikit-learn models.

A *trivial* model (a depth-4 tree on one column at a time) must not be near-perfect: a single
column that predicts the target that well is a leak. A *reasonable* pipeline (the better of
one-hot encoding + a linear model, and gradient boosting on ordinal codes) must beat a constant
by a margin. Both are fitted on the env's holdout split with seed 0 (of a sample of at most
:data:`MAX_ROWS` rows). Used by the tests of the
curated tasks and by ``benchmarks/real_tasks.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from etpo_gym.tasks.base import Task, holdout_split

#: A single column predicting this well means the target leaked into a feature.
LEAK_AUC, LEAK_R2 = 0.95, 0.90
#: A whole pipeline this good is "near-perfect": no benchmark left to run.
PERFECT_AUC, PERFECT_R2 = 0.99, 0.98
#: A reasonable pipeline must beat a constant (AUC 0.5, R² 0) by at least this much.
SIGNAL_AUC, SIGNAL_R2 = 0.58, 0.10


def _score(task: Task, y: np.ndarray, pred: np.ndarray) -> float:
    if task.task_type == "regression":
        return float(r2_score(y, pred))
    if task.task_type == "binary":
        return float(roc_auc_score(y, pred[:, 1]))
    return float(roc_auc_score(y, pred, multi_class="ovo", labels=np.arange(pred.shape[1])))


def _ordinal(X: np.ndarray | pd.DataFrame) -> pd.DataFrame:
    """Every column as numbers: text and booleans as sorted codes, missing values as NaN."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[column] = values.astype(float)
        else:
            codes, _ = pd.factorize(values.astype(object), sort=True)
            out[column] = np.where(codes < 0, np.nan, codes).astype(float)
    return pd.DataFrame(out)


#: Rows the checks use at most (a seeded, stratified sample): enough to tell a leak or a signal,
#: and the checks of every curated task stay fast.
MAX_ROWS = 10_000


def _split(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The env's holdout split (seed 0), of a sample of at most :data:`MAX_ROWS` rows."""
    y = task.data.y
    stratify = task.task_type != "regression"
    rows = np.arange(len(y))
    if len(y) > MAX_ROWS:
        rows, _ = holdout_split(y, 1, 1.0 - MAX_ROWS / len(y), stratify=stratify)
    train, evaluation = holdout_split(y[rows], 0, 0.3, stratify=stratify)
    return rows[train], rows[evaluation]


def _fit_predict(task: Task, model, X: pd.DataFrame, train, evaluation) -> float:
    y = task.data.y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X.iloc[train], y[train])
        if task.task_type == "regression":
            pred = model.predict(X.iloc[evaluation])
        else:
            pred = model.predict_proba(X.iloc[evaluation])
    return _score(task, y[evaluation], pred)


def best_single_column(task: Task) -> tuple[float, str]:
    """The best holdout score of a depth-4 tree on one column, and that column."""
    X = _ordinal(task.data.X)
    train, evaluation = _split(task)
    tree = DecisionTreeRegressor if task.task_type == "regression" else DecisionTreeClassifier
    scores = [
        (_fit_predict(task, tree(max_depth=4, min_samples_leaf=5, random_state=0), X[[c]], train,
                      evaluation), str(c))
        for c in X.columns
    ]  # fmt: skip
    return max(scores)


def pipeline_scores(task: Task) -> dict[str, float]:
    """Holdout scores of one-hot + linear model and of gradient boosting on ordinal codes."""
    train, evaluation = _split(task)
    regression = task.task_type == "regression"
    X = task.data.X if isinstance(task.data.X, pd.DataFrame) else pd.DataFrame(task.data.X)
    X = X.apply(lambda c: c.astype(object) if pd.api.types.is_bool_dtype(c) else c)
    prep = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
         make_column_selector(dtype_include="number")),
        (make_pipeline(SimpleImputer(strategy="most_frequent"),
                       OneHotEncoder(handle_unknown="ignore", min_frequency=5)),
         make_column_selector(dtype_exclude="number")),
    )  # fmt: skip
    linear = RidgeCV() if regression else LogisticRegression(max_iter=2000)
    boosting = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        max_iter=60, random_state=0
    )
    return {
        "linear": _fit_predict(task, make_pipeline(prep, linear), X, train, evaluation),
        "boosting": _fit_predict(task, boosting, _ordinal(task.data.X), train, evaluation),
    }
