"""Synthetic *skill* tasks: small tables that reward one data-science decision each.

Every table is generated from a fixed seed with :func:`numpy.random.default_rng`, so it is the
same, byte for byte, on every machine: features are built with arithmetic only (no ``exp`` or
``sin``, whose last bit can differ between CPUs and libm builds), labels come from a thresholded
Gaussian-noise score (a probit model) and stored values are rounded.

Each task has a naive pipeline that runs but misses the point, and a good one that makes the
decision; ``tests/tasks/test_skill_spread.py`` fits both and checks that they are at least 0.1 ROC
AUC apart, and ``docs/tasks.md`` lists the measured figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from etpo_gym.tasks.base import Dataset, Task


def _labels(rng: np.random.Generator, score: np.ndarray, positive_rate: float) -> np.ndarray:
    """Binary labels from a latent score plus unit Gaussian noise (a probit model).

    The threshold is a quantile, so the positive rate is ``positive_rate`` whatever the scale of
    ``score``. Returns ``(n,)`` int64.
    """
    latent = score + rng.standard_normal(len(score))
    threshold = np.quantile(latent, 1.0 - positive_rate)
    return (latent > threshold).astype(np.int64)


def make_missing(seed: int = 101, n: int = 2000) -> Dataset:
    """Lab panel where a value is mostly missing *because* it is high (missing not at random).

    Six measurements drive the outcome; each is hidden when its latent value is above a cut, so
    "missing" means "high". Mean imputation puts those rows in the middle of the observed
    (low) values and loses the signal; a missing-value indicator, or a model that splits on
    NaN, keeps it. Four more measurements are noise, missing completely at random.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 10))
    y = _labels(rng, 1.0 * z[:, :6].sum(axis=1), positive_rate=0.4)
    values = np.round(50.0 + 10.0 * z, 2)
    hidden = np.zeros_like(z, dtype=bool)
    hidden[:, :6] = z[:, :6] + 0.3 * rng.standard_normal((n, 6)) > 0.2
    hidden[:, 6:] = rng.random((n, 4)) < 0.3
    values[hidden] = np.nan
    # The informative columns are interleaved with the noise ones so that order gives nothing away.
    order = [0, 6, 1, 2, 7, 3, 8, 4, 5, 9]
    columns = [f"lab_{i + 1:02d}" for i in range(10)]
    X = pd.DataFrame(values[:, order], columns=columns)
    return Dataset(X=X, y=y, feature_names=columns, class_names=["healthy", "condition"])


def make_categorical(seed: int = 102, n: int = 2500) -> Dataset:
    """Orders whose outcome depends on which store, product and region they came from.

    Three string columns with 12 to 60 levels carry almost all the signal (each level has its own
    effect); the two numeric columns carry a little. Numeric-only code sees only the latter.
    """
    rng = np.random.default_rng(seed)
    levels = {"store": 60, "product": 30, "region": 12}
    score = np.zeros(n)
    frame: dict[str, object] = {}
    for column, k in levels.items():
        # Uneven level frequencies, as in real data; a few levels are rare.
        weights = rng.dirichlet(np.full(k, 2.0))
        codes = rng.choice(k, size=n, p=weights)
        effects = rng.standard_normal(k)
        score += 0.9 * effects[codes]
        frame[column] = [f"{column[0].upper()}{code:03d}" for code in codes]
    quantity = rng.integers(1, 20, size=n)
    price = np.round(5.0 + 95.0 * rng.random(n), 2)
    score += 0.15 * (quantity - 10) / 5.5
    frame["quantity"] = quantity.astype(np.float64)
    frame["unit_price"] = price
    y = _labels(rng, score, positive_rate=0.35)
    X = pd.DataFrame(frame)
    return Dataset(X=X, y=y, feature_names=list(X.columns), class_names=["kept", "returned"])


def make_noisy(seed: int = 103, n: int = 400, p: int = 300) -> Dataset:
    """Few informative features among hundreds of noise features, fewer rows than features.

    Five of ``p`` standard-normal features drive the outcome. With ``n`` train rows below ``p``
    an unregularised (or weakly regularised) model can fit noise perfectly; feature selection or
    a strong (L1) penalty finds the five.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, p))
    informative = rng.choice(p, size=5, replace=False)
    y = _labels(rng, 0.9 * z[:, informative].sum(axis=1), positive_rate=0.5)
    X = np.round(z, 4)
    return Dataset(
        X=X,
        y=y,
        feature_names=[f"x{i:03d}" for i in range(p)],
        class_names=["no_response", "response"],
    )


def make_interactions(seed: int = 104, n: int = 2000) -> Dataset:
    """An XOR-like outcome: positive when two pairs of features have the same sign.

    No single feature, and no weighted sum of them, separates the classes (a linear model scores
    about 0.5 ROC AUC); trees, boosting, kernels or product features find the interactions.
    """
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, size=(n, 8))
    score = 2.0 * np.sign(z[:, 0] * z[:, 1]) + 1.0 * np.sign(z[:, 2] * z[:, 3])
    y = _labels(rng, score, positive_rate=0.5)
    X = np.round(z, 4)
    return Dataset(
        X=X, y=y, feature_names=[f"x{i}" for i in range(8)], class_names=["normal", "alarm"]
    )


def make_scale(seed: int = 105, n: int = 2000) -> Dataset:
    """Sensor readings in wildly different units: the signal is in the tiny ones.

    Four informative features are of order 1e-3, four noise features of order 1e5 to 1e6.
    Unscaled distances (KNN, RBF kernels) are all noise, and an L2-penalised linear model cannot
    afford the huge weights the tiny features need; after standardising, a linear model works.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 8))
    y = _labels(rng, 0.9 * z[:, :4].sum(axis=1), positive_rate=0.5)
    small = np.round(1e-3 * (2.0 + 0.5 * z[:, :4]), 7)
    large = np.round(np.array([2e5, 5e5, 1e6, 3e6]) * (3.0 + z[:, 4:]), 1)
    X = np.column_stack([small[:, 0], large[:, 0], small[:, 1], large[:, 1]])
    X = np.column_stack([X, small[:, 2], large[:, 2], small[:, 3], large[:, 3]])
    names = ["ratio_a", "count_a", "ratio_b", "count_b", "ratio_c", "count_c", "ratio_d", "count_d"]
    return Dataset(X=X, y=y, feature_names=names, class_names=["ok", "failed"])


def make_dates(seed: int = 106, n: int = 2500) -> Dataset:
    """Card transactions where fraud happens at night and at weekends.

    The timestamp is a string with minute resolution, so nearly every value is unique: dropped
    or one-hot encoded as it is, it tells nothing. Parsed into hour of day and day of week it
    carries most of the signal; amount and merchant carry a little.
    """
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 365 * 24 * 60, size=n)
    hour = (minutes // 60) % 24
    # 2023-01-01 was a Sunday; Monday is 0.
    weekday = (minutes // (24 * 60) + 6) % 7
    merchants = ["grocery", "fuel", "online", "travel", "restaurant", "electronics"]
    merchant = rng.integers(0, len(merchants), size=n)
    amount = np.round(np.abs(30.0 + 40.0 * rng.standard_normal(n)) + 1.0, 2)
    score = 2.2 * (hour < 5) + 1.2 * (weekday >= 5) + 0.3 * np.array([0, 0, 1, 1, 0, 1])[merchant]
    score += 0.2 * (amount > 80)
    y = _labels(rng, score, positive_rate=0.25)
    stamps = np.datetime64("2023-01-01T00:00") + minutes.astype("timedelta64[m]")
    text = np.char.replace(np.datetime_as_string(stamps, unit="m"), "T", " ")
    X = pd.DataFrame(
        {
            "timestamp": pd.Series(text.tolist(), dtype=str),
            "amount": amount,
            "merchant": pd.Series([merchants[i] for i in merchant], dtype=str),
        }
    )
    return Dataset(X=X, y=y, feature_names=list(X.columns), class_names=["legit", "fraud"])


def _task(
    name: str, loader: Callable[[], Dataset], description: str, skill: str, version: int = 1
) -> Task:
    return Task(
        name=name,
        description=description,
        task_type="binary",
        metric="roc_auc",
        loader=loader,
        source="synthetic",
        skill=skill,
        version=version,
    )


def synthetic_tasks() -> list[Task]:
    """The skill tasks, in a stable order (new ``Task`` objects; data loads on first use)."""
    return [
        _task(
            "skill_missing",
            make_missing,
            "Synthetic lab panel: 10 blood measurements per patient, many of them not recorded; "
            "predict whether the patient developed the condition.",
            "Handling missing values that are informative (not at random): impute with a "
            "missing indicator, or use a model that handles NaN natively.",
        ),
        _task(
            "skill_categorical",
            make_categorical,
            "Synthetic retail orders: store, product and region codes plus quantity and unit "
            "price; predict whether the order was returned.",
            "Encoding high-cardinality string categories (one-hot or ordinal/target encoding) "
            "instead of dropping them.",
        ),
        _task(
            "skill_noisy",
            make_noisy,
            "Synthetic assay: 300 standardised measurements per sample, fewer samples than "
            "measurements; predict the binary response.",
            "Avoiding overfitting when few of many features matter and rows are scarce: feature "
            "selection or strong (L1) regularisation.",
        ),
        _task(
            "skill_interactions",
            make_interactions,
            "Synthetic control signals: 8 readings in [-1, 1]; predict whether the system "
            "raised an alarm.",
            "Modelling feature interactions (XOR-like): a linear model is at chance, trees, "
            "boosting, kernels or product features are not.",
        ),
        _task(
            "skill_scale",
            make_scale,
            "Synthetic sensor log: 8 readings recorded in very different units; predict whether "
            "the unit failed.",
            "Standardising features of wildly different scales before a distance- or "
            "penalty-based model (KNN, SVC, regularised logistic regression).",
        ),
        _task(
            "skill_dates",
            make_dates,
            "Synthetic card transactions: timestamp, amount and merchant category; predict "
            "whether the transaction was reported as fraud.",
            "Feature engineering from a timestamp string (hour of day, day of week) rather than "
            "dropping it or one-hot encoding its unique values.",
        ),
    ]


def dataset_digest(data: Dataset) -> str:
    """SHA-256 of a dataset's features, target and names (equal digests: identical data)."""
    h = hashlib.sha256()
    h.update(repr((data.feature_names, data.class_names)).encode())
    if isinstance(data.X, pd.DataFrame):
        h.update(repr([str(t) for t in data.X.dtypes]).encode())
        # repr-exact floats: to_csv writes the shortest string that round-trips.
        h.update(data.X.to_csv(index=False, lineterminator="\n").encode())
    else:
        h.update(f"{data.X.dtype}{data.X.shape}".encode())
        h.update(np.ascontiguousarray(data.X).tobytes())
    h.update(f"{data.y.dtype}{data.y.shape}".encode())
    h.update(np.ascontiguousarray(data.y).tobytes())
    return h.hexdigest()
