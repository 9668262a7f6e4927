"""Host-side checks of predictions and the task metrics.

Predictions come back from the sandbox as an array; nothing the code says about its own score is
trusted. :func:`check_predictions` rejects anything the metric cannot honestly use, and
:func:`score` refuses a metric that comes out non-finite (e.g. R² of predictions near 1e200), each
with a message the agent can act on.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import mean_squared_error, r2_score, roc_auc_score

from etpo_gym.errors import EtpoGymError
from etpo_gym.tasks.base import Task


class PredictionError(EtpoGymError, ValueError):
    """The predictions have the wrong shape, type or values (the agent's fault)."""


def expected_shape(task: Task, n_eval: int) -> tuple[int, ...]:
    """The shape of the predictions for ``n_eval`` rows: ``(n,)``, or ``(n, k)`` for multiclass."""
    if task.task_type == "multiclass":
        return (n_eval, task.n_classes or 0)
    return (n_eval,)


def check_predictions(pred: np.ndarray, task: Task, n_eval: int) -> np.ndarray:
    """Validate predictions for ``n_eval`` rows and return them as float64.

    Binary: ``(n,)`` positive-class probabilities. Multiclass: ``(n, k)`` class probabilities.
    Regression: ``(n,)`` values. Values must be finite; probabilities inside ``[0, 1]``.
    """
    if pred.dtype.kind not in "biuf":
        raise PredictionError(f"predictions have dtype {pred.dtype}; expected numbers")
    with np.errstate(all="ignore"):
        pred = pred.astype(np.float64, copy=False)
    expected = expected_shape(task, n_eval)
    if pred.shape != expected:
        raise PredictionError(f"predictions have shape {pred.shape}; expected {expected}")
    finite = np.isfinite(pred)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise PredictionError(f"predictions contain {bad} NaN or infinite values")
    if task.task_type != "regression" and (pred.min() < -1e-9 or pred.max() > 1 + 1e-9):
        raise PredictionError(
            f"probabilities must lie in [0, 1]; got values in [{pred.min():.4g}, {pred.max():.4g}]"
        )
    return pred


def score(task: Task, y_true: np.ndarray, pred: np.ndarray) -> float:
    """The task's metric of validated predictions (higher is better for every metric but rmse).

    Raises :class:`PredictionError` when the metric is not finite (predictions so large that
    the squared errors overflow).
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = _metric(task, y_true, pred)
    if not math.isfinite(value):
        raise PredictionError(
            f"the {task.metric} of these predictions is not finite ({value}; values up to "
            f"{float(np.max(np.abs(pred))):.3g}): predict values on the scale of the target"
        )
    return value


def _metric(task: Task, y_true: np.ndarray, pred: np.ndarray) -> float:
    if task.metric == "roc_auc":
        if task.task_type == "multiclass":
            # Rows need not sum to 1 exactly (float noise, clipping): renormalise for sklearn.
            probs = np.clip(pred, 0.0, 1.0)
            sums = probs.sum(axis=1, keepdims=True)
            probs = np.where(sums > 0, probs / np.where(sums > 0, sums, 1.0), 1.0 / probs.shape[1])
            return float(
                roc_auc_score(
                    y_true,
                    probs,
                    multi_class="ovo",
                    average="macro",
                    labels=np.arange(probs.shape[1]),
                )
            )
        return float(roc_auc_score(y_true, pred))
    if task.metric == "r2":
        return float(r2_score(y_true, pred))
    return float(np.sqrt(mean_squared_error(y_true, pred)))
