"""The real CSVs in ``../shared/data/real`` load with the expected types (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etpo_gym.tasks import get_task

REAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


def _real(name: str) -> Path:
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found in {REAL_DATA} (needs the shared/ folder)")
    return path


def test_kidney_stone_is_numeric_binary() -> None:
    task = get_task(str(_real("kidney_stone.csv")), target="target", drop=["id"])
    assert task.name == "kidney_stone" and task.task_type == "binary"
    assert isinstance(task.data.X, np.ndarray) and task.data.X.dtype == np.float64
    assert "id" not in task.data.feature_names and "target" not in task.data.feature_names
    assert task.data.class_names == ["0", "1"]
    raw = pd.read_csv(_real("kidney_stone.csv"))
    assert task.n_rows == len(raw) and task.n_features == raw.shape[1] - 2


def test_pharyngitis_keeps_missing_values() -> None:
    task = get_task(str(_real("pharyngitis.csv")), target="radt", drop=["number"])
    data = task.data
    assert task.task_type == "binary"
    assert isinstance(data.X, pd.DataFrame) and data.X.isna().to_numpy().any()
    assert "number" not in data.X.columns and "radt" not in data.X.columns


def test_spaceship_titanic_keeps_strings_and_bool_target() -> None:
    task = get_task(
        str(_real("spaceship_titanic.csv")), target="Transported", drop=["PassengerId", "Name"]
    )
    data = task.data
    assert task.task_type == "binary" and data.class_names == ["False", "True"]
    assert isinstance(data.X, pd.DataFrame)
    cabins = data.X["Cabin"].dropna()
    assert len(cabins) > 0 and all(isinstance(v, str) and "/" in v for v in cabins.head(50))
    assert {"PassengerId", "Name", "Transported"}.isdisjoint(data.X.columns)
