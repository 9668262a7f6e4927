"""holdout_split: disjoint, complete, stratified, seeded, and evaluation rows out of table order."""

from __future__ import annotations

import numpy as np
import pytest

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import holdout_split


def _labels() -> np.ndarray:
    # Unbalanced classes, including one with only 3 rows.
    return np.repeat(np.arange(4), [500, 120, 37, 3])[np.random.default_rng(7).permutation(660)]


@pytest.mark.parametrize("stratify", [True, False])
def test_disjoint_and_covers_every_row(stratify) -> None:
    y = _labels()
    train, evaluation = holdout_split(y, seed=3, stratify=stratify)
    assert np.intersect1d(train, evaluation).size == 0
    assert np.array_equal(np.union1d(train, evaluation), np.arange(len(y)))
    assert np.all(np.diff(train) > 0)
    assert abs(len(evaluation) / len(y) - 0.3) < 0.02


def test_stratified_proportions_and_every_class_on_both_sides() -> None:
    y = _labels()
    train, evaluation = holdout_split(y, seed=0, eval_fraction=0.3)
    for cls in np.unique(y):
        n_cls = np.count_nonzero(y == cls)
        n_eval = np.count_nonzero(y[evaluation] == cls)
        assert n_eval >= 1 and np.count_nonzero(y[train] == cls) >= 1
        assert abs(n_eval - 0.3 * n_cls) <= 1


def test_same_seed_same_split_other_seed_other_split() -> None:
    y = _labels()
    a_train, a_eval = holdout_split(y, seed=11)
    b_train, b_eval = holdout_split(y, seed=11)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_eval, b_eval)
    _, c_eval = holdout_split(y, seed=12)
    assert not np.array_equal(a_eval, c_eval)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_bad_fraction_is_rejected(fraction) -> None:
    with pytest.raises(TaskError, match=f"eval_fraction={fraction!r}"):
        holdout_split(_labels(), seed=0, eval_fraction=fraction)


@pytest.mark.parametrize("stratify", [True, False])
def test_evaluation_row_position_says_nothing_about_its_label(stratify) -> None:
    # A table sorted by its target (many real tables are): in table order the evaluation rows
    # would be all negatives first, so an agent could predict by position alone.
    y = np.repeat([0, 1], [600, 400])
    _, evaluation = holdout_split(y, seed=5, stratify=stratify)
    first_half = y[evaluation[: len(evaluation) // 2]]
    assert 0.25 < first_half.mean() < 0.55  # about the base rate, not 0.0
    # The order is seeded; which rows are evaluation rows does not depend on it.
    again = holdout_split(y, seed=5, stratify=stratify)[1]
    assert np.array_equal(evaluation, again)
