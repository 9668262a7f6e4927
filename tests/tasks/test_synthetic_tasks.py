"""Synthetic skill tasks: deterministic bytes, and the data properties each skill relies on."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from etpo_gym.tasks import dataset_digest, get_task, list_tasks
from etpo_gym.tasks.synthetic import make_missing

_DIGESTS = (
    "import json; from etpo_gym.tasks import dataset_digest, list_tasks; "
    "print(json.dumps({t.name: dataset_digest(t.loader()) for t in list_tasks('synthetic')}))"
)


def test_same_bytes_in_separate_processes() -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DIGESTS], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    here = {t.name: dataset_digest(t.data) for t in list_tasks("synthetic")}
    assert outputs[0] == outputs[1] == here
    assert len(set(here.values())) == len(here)  # no two tasks share data


def test_digest_sees_a_one_value_change() -> None:
    data = make_missing()
    changed = data.X.copy()
    changed.iloc[0, 0] = 0.0 if changed.iloc[0, 0] != 0.0 else 1.0
    assert dataset_digest(data) == dataset_digest(make_missing())
    assert dataset_digest(data) != dataset_digest(dataclasses.replace(data, X=changed))


def test_the_seed_drives_the_data() -> None:
    assert dataset_digest(make_missing(seed=1)) != dataset_digest(make_missing())


def test_missing_task_has_informative_nans_that_break_plain_models() -> None:
    data = get_task("skill_missing").data
    assert isinstance(data.X, pd.DataFrame)
    nan_share = data.X.isna().mean()
    assert (nan_share > 0.2).all()
    # Missingness carries the signal: the positive rate differs between missing and present.
    gaps = [abs(data.y[m].mean() - data.y[~m].mean()) for m in data.X.isna().to_numpy().T]
    assert max(gaps) > 0.15
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(data.X, data.y)


def test_categorical_task_has_many_string_levels() -> None:
    X = get_task("skill_categorical").data.X
    strings = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    assert len(strings) >= 2
    assert max(X[c].nunique() for c in strings) >= 30
    assert all(isinstance(v, str) for v in X[strings[0]].head())


def test_noisy_task_has_more_features_than_train_rows() -> None:
    task = get_task("skill_noisy")
    assert isinstance(task.data.X, np.ndarray)
    assert task.n_features > 0.7 * task.n_rows


def test_scale_task_spans_many_orders_of_magnitude() -> None:
    spread = np.abs(get_task("skill_scale").data.X).mean(axis=0)
    assert spread.max() / spread.min() > 1e6


def test_dates_task_timestamps_parse_and_are_nearly_unique() -> None:
    X = get_task("skill_dates").data.X
    stamps = pd.to_datetime(X["timestamp"], format="%Y-%m-%d %H:%M")
    assert stamps.notna().all()
    assert X["timestamp"].nunique() > 0.9 * len(X)
