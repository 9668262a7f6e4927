"""CSV tasks: type inference of features and target, caching, and every error case."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from etpo_gym.errors import TaskError
from etpo_gym.tasks import get_task, load_csv_task


def _write(tmp_path, frame: pd.DataFrame, name: str = "data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _numeric(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "a": rng.normal(size=n),
            "b": rng.integers(0, 5, size=n),
            "label": np.tile([0, 1], n // 2),
        }
    )


def test_numeric_complete_features_become_a_float_array(tmp_path) -> None:
    frame = _numeric()
    task = load_csv_task(_write(tmp_path, frame), target="label", drop=["id"])
    data = task.data
    assert isinstance(data.X, np.ndarray) and data.X.dtype == np.float64
    assert data.feature_names == ["a", "b"]
    np.testing.assert_allclose(data.X[:, 0], frame["a"].to_numpy())
    assert task.task_type == "binary" and task.metric == "roc_auc"
    assert data.class_names == ["0", "1"]
    assert np.array_equal(data.y, frame["label"].to_numpy())
    assert task.name == "data" and task.source == "csv"
    assert task.description == "data: predict label from 2 columns."


def test_name_overrides_the_file_stem(tmp_path) -> None:
    task = load_csv_task(_write(tmp_path, _numeric()), target="label", name="mine")
    assert task.name == "mine"
    assert task.n_features == 3  # id stays a feature unless dropped


def test_strings_and_missing_values_give_a_dataframe_as_read(tmp_path) -> None:
    frame = _numeric()
    frame["city"] = ["Oslo", "Lima"] * 20
    frame.loc[3, "a"] = np.nan
    frame["flag"] = [True, False, False, True] * 10
    data = load_csv_task(_write(tmp_path, frame), target="label", drop=["id"]).data
    assert isinstance(data.X, pd.DataFrame)
    assert list(data.X.columns) == data.feature_names == ["a", "b", "city", "flag"]
    assert np.isnan(data.X.loc[3, "a"])
    assert data.X["city"].tolist() == frame["city"].tolist()
    assert pd.api.types.is_bool_dtype(data.X["flag"])


def test_missing_values_alone_give_a_dataframe(tmp_path) -> None:
    frame = _numeric()
    frame.loc[5, "b"] = np.nan
    data = load_csv_task(_write(tmp_path, frame), target="label").data
    assert isinstance(data.X, pd.DataFrame) and data.X["b"].isna().sum() == 1


def test_bool_target(tmp_path) -> None:
    frame = _numeric()
    frame["label"] = frame["label"] == 0
    task = load_csv_task(_write(tmp_path, frame), target="label")
    assert task.task_type == "binary"
    assert task.data.class_names == ["False", "True"]
    assert np.array_equal(task.data.y, frame["label"].to_numpy().astype(np.int64))


def test_string_target_codes_follow_sorted_labels(tmp_path) -> None:
    frame = _numeric(n=60)
    frame["label"] = ["fish", "cat", "dog"] * 20
    task = load_csv_task(_write(tmp_path, frame), target="label")
    assert task.task_type == "multiclass" and task.n_classes == 3
    assert task.data.class_names == ["cat", "dog", "fish"]
    assert task.data.y[:3].tolist() == [2, 0, 1]


def test_integer_labels_sort_numerically(tmp_path) -> None:
    frame = _numeric(n=48)
    frame["label"] = np.tile([10, 2, 1], 16)
    task = load_csv_task(_write(tmp_path, frame), target="label")
    assert task.data.class_names == ["1", "2", "10"]
    assert task.data.y[:3].tolist() == [2, 1, 0]


def test_float_target_is_regression(tmp_path) -> None:
    frame = _numeric()
    frame["label"] = np.linspace(0.0, 3.9, 40)
    task = load_csv_task(_write(tmp_path, frame), target="label")
    assert task.task_type == "regression" and task.metric == "r2"
    assert task.data.class_names is None and task.data.y.dtype == np.float64
    np.testing.assert_allclose(task.data.y, frame["label"].to_numpy())


def test_many_distinct_integers_are_regression(tmp_path) -> None:
    frame = _numeric()
    frame["label"] = np.arange(40) * 3
    assert load_csv_task(_write(tmp_path, frame), target="label").task_type == "regression"


def test_rows_without_target_are_dropped_and_integral_floats_are_classes(tmp_path) -> None:
    frame = _numeric(n=44)
    frame["label"] = frame["label"].astype(float)
    frame.loc[[0, 7, 9], "label"] = np.nan  # read back as a float column
    task = load_csv_task(_write(tmp_path, frame), target="label", drop=["id"])
    assert task.n_rows == 41
    assert task.task_type == "binary" and task.data.class_names == ["0", "1"]
    kept = frame["label"].notna().to_numpy()
    np.testing.assert_allclose(task.data.X[:, 0], frame["a"].to_numpy()[kept])


def test_get_task_caches_per_path_target_and_drop(tmp_path) -> None:
    path = _write(tmp_path, _numeric())
    first = get_task(str(path), target="label", drop=["id"])
    assert get_task(path, target="label", drop=("id",)) is first
    assert get_task(str(path), target="label") is not first
    frame = _numeric(seed=1)
    frame.to_csv(path, index=False)
    os.utime(path, ns=(0, 10**18))  # a different mtime even on coarse clocks
    again = get_task(str(path), target="label", drop=["id"])
    assert again is not first
    np.testing.assert_allclose(again.data.X[:, 0], frame["a"].to_numpy())


# --- errors -------------------------------------------------------------------------------


def test_missing_path(tmp_path) -> None:
    with pytest.raises(TaskError, match=r"nope\.csv' does not exist"):
        get_task(str(tmp_path / "nope.csv"), target="y")


def test_directory(tmp_path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(TaskError, match=r"is a directory; expected a \.csv file"):
        load_csv_task(folder, target="y")


def test_not_a_csv(tmp_path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(TaskError, match=r"not a \.csv file \(suffix '\.tsv'\)"):
        get_task(str(path), target="b")


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(TaskError, match=r"is empty"):
        load_csv_task(path, target="y")


def test_header_only(tmp_path) -> None:
    path = tmp_path / "head.csv"
    path.write_text("a,b,y\n")
    with pytest.raises(TaskError, match=r"header but no data rows"):
        load_csv_task(path, target="y")


def test_target_column_missing_lists_the_columns(tmp_path) -> None:
    path = _write(tmp_path, _numeric())
    with pytest.raises(
        TaskError, match=r"target column 'lable' not found; columns: \['id', 'a', 'b', 'label'\]"
    ):
        load_csv_task(path, target="lable")


def test_drop_column_missing(tmp_path) -> None:
    path = _write(tmp_path, _numeric())
    with pytest.raises(TaskError, match=r"drop column\(s\) \['ID'\] not found; columns: \['id'"):
        load_csv_task(path, target="label", drop=["ID"])


def test_target_in_drop(tmp_path) -> None:
    path = _write(tmp_path, _numeric())
    with pytest.raises(TaskError, match=r"'label' is also listed in drop"):
        load_csv_task(path, target="label", drop=["label"])


def test_no_features_left(tmp_path) -> None:
    path = _write(tmp_path, _numeric())
    with pytest.raises(TaskError, match=r"no feature columns left"):
        load_csv_task(path, target="label", drop=["id", "a", "b"])


def test_single_class(tmp_path) -> None:
    frame = _numeric()
    frame["label"] = "yes"
    with pytest.raises(TaskError, match=r"single class, 'yes'"):
        load_csv_task(_write(tmp_path, frame), target="label")


def test_constant_regression_target(tmp_path) -> None:
    frame = _numeric()
    frame["label"] = 0.5
    with pytest.raises(TaskError, match=r"single value, 0\.5"):
        load_csv_task(_write(tmp_path, frame), target="label")


def test_too_few_rows(tmp_path) -> None:
    with pytest.raises(TaskError, match=r"12 rows with a target value; at least 20"):
        load_csv_task(_write(tmp_path, _numeric(n=12)), target="label")


def test_class_with_one_row(tmp_path) -> None:
    frame = _numeric()
    frame.loc[0, "label"] = 7
    with pytest.raises(TaskError, match=r"class '7' has fewer than 2 rows"):
        load_csv_task(_write(tmp_path, frame), target="label")


def test_too_many_string_classes(tmp_path) -> None:
    frame = _numeric(n=60)
    frame["label"] = [f"c{i % 30}" for i in range(60)]
    with pytest.raises(TaskError, match=r"30 distinct non-numeric values; .* at most 20"):
        load_csv_task(_write(tmp_path, frame), target="label")
