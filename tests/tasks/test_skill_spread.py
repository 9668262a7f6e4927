"""Each synthetic skill task rewards its decision: a good pipeline beats a naive one by >= 0.1 AUC.

Both pipelines are plain scikit-learn, fitted in-process on the env's holdout split
(``holdout_split(y, seed=0)``); the naive one is what a reasonable first attempt looks like, the
good one makes the decision the task's ``skill`` names. The figures in ``docs/tasks.md`` come from
the same pipelines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)

from etpo_gym.tasks import get_task, list_tasks
from etpo_gym.tasks.base import holdout_split

MIN_SPREAD = 0.1


def _lr() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


def _numeric_only() -> Pipeline:
    """Drop the string columns: what numeric-only code ends up doing."""
    keep = ColumnTransformer(
        [("num", StandardScaler(), make_column_selector(dtype_include="number"))]
    )
    return make_pipeline(keep, _lr())


def _one_hot_all() -> Pipeline:
    """The generic tabular recipe: scale numbers, one-hot every string column."""
    encode = ColumnTransformer(
        [
            ("num", StandardScaler(), make_column_selector(dtype_include="number")),
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore"),
                make_column_selector(dtype_exclude="number"),
            ),
        ]
    )
    return make_pipeline(encode, _lr())


def _date_parts(frame: pd.DataFrame) -> pd.DataFrame:
    stamp = pd.to_datetime(frame["timestamp"])
    out = frame.drop(columns="timestamp")
    out["hour"] = stamp.dt.hour.astype(str)
    out["weekday"] = stamp.dt.day_of_week.astype(str)
    return out


# task name -> (naive, good) pipeline factories
PIPELINES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "skill_missing": (
        lambda: make_pipeline(SimpleImputer(), StandardScaler(), _lr()),
        lambda: make_pipeline(SimpleImputer(add_indicator=True), StandardScaler(), _lr()),
    ),
    "skill_categorical": (_numeric_only, _one_hot_all),
    "skill_noisy": (
        lambda: make_pipeline(StandardScaler(), _lr()),
        lambda: make_pipeline(StandardScaler(), SelectKBest(f_classif, k=10), _lr()),
    ),
    "skill_interactions": (
        lambda: make_pipeline(StandardScaler(), _lr()),
        # Product features stand in for trees here: same idea, a hundredth of the fit time.
        lambda: make_pipeline(
            PolynomialFeatures(degree=2, interaction_only=True), StandardScaler(), _lr()
        ),
    ),
    "skill_scale": (
        lambda: KNeighborsClassifier(n_neighbors=25),
        lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=25)),
    ),
    "skill_dates": (
        _one_hot_all,
        lambda: make_pipeline(FunctionTransformer(_date_parts), _one_hot_all()),
    ),
}


def holdout_auc(task_name: str, make_model: Callable[[], object]) -> float:
    """ROC AUC of ``make_model()`` fitted on the env's holdout train rows, on its eval rows."""
    data = get_task(task_name).data
    train_idx, eval_idx = holdout_split(data.y, seed=0)
    x_train, y_train = data.rows(train_idx)
    x_eval, y_eval = data.rows(eval_idx)
    model = make_model()
    model.fit(x_train, y_train)
    return float(roc_auc_score(y_eval, model.predict_proba(x_eval)[:, 1]))


def test_every_skill_task_has_pipelines() -> None:
    assert {t.name for t in list_tasks("synthetic")} == set(PIPELINES)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_good_pipeline_beats_naive_by_the_spread(name: str) -> None:
    naive, good = PIPELINES[name]
    naive_auc, good_auc = holdout_auc(name, naive), holdout_auc(name, good)
    assert np.isfinite(naive_auc) and np.isfinite(good_auc)
    assert good_auc - naive_auc >= MIN_SPREAD, (
        f"{name}: good {good_auc:.3f} - naive {naive_auc:.3f} < {MIN_SPREAD}"
    )
