"""Built-in offline tasks from scikit-learn's bundled datasets (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from etpo_gym.tasks.base import Dataset, Task


def _sklearn_loader(name: str, classification: bool) -> Callable[[], Dataset]:
    def load() -> Dataset:
        # Imported late: sklearn.datasets is slow to import and only needed when data is used.
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        y = bunch.target.astype(np.int64 if classification else np.float64)
        return Dataset(
            X=np.ascontiguousarray(bunch.data, dtype=np.float64),
            y=y,
            feature_names=[str(f) for f in bunch.feature_names],
            class_names=[str(c) for c in bunch.target_names] if classification else None,
        )

    return load


def sklearn_tasks() -> list[Task]:
    """The scikit-learn tasks, in a stable order (new ``Task`` objects; data loads on first use)."""
    return [
        Task(
            name="breast_cancer",
            description="569 breast-tumour biopsies, each described by 30 measurements of the "
            "cell nuclei in a digitised image; predict whether the tumour is malignant or benign.",
            task_type="binary",
            metric="roc_auc",
            loader=_sklearn_loader("breast_cancer", classification=True),
        ),
        Task(
            name="wine",
            description="178 Italian wines, each described by 13 results of a chemical analysis; "
            "predict which of 3 cultivars the wine comes from.",
            task_type="multiclass",
            metric="roc_auc",
            loader=_sklearn_loader("wine", classification=True),
        ),
        Task(
            name="digits",
            description="1797 handwritten digits, each an 8x8 image given as 64 pixel "
            "intensities from 0 to 16; predict the digit (0-9).",
            task_type="multiclass",
            metric="roc_auc",
            loader=_sklearn_loader("digits", classification=True),
        ),
        Task(
            name="diabetes",
            description="442 diabetes patients, each described by age, sex, body-mass index, "
            "blood pressure and six blood-serum measurements (all mean-centred and scaled); "
            "predict a measure of disease progression one year later.",
            task_type="regression",
            metric="r2",
            loader=_sklearn_loader("diabetes", classification=False),
        ),
    ]
