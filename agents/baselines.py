"""Baseline agents: fixed scikit-learn pipelines and a random template menu (no torch).

Every body decides at run time, inside the sandbox, what it is looking at: a float target is a
regression task (a regressor is fitted), integer class codes a classification task; a DataFrame
gets per-column preprocessing (numeric: median imputation with missing-value indicators;
everything else: most-frequent imputation and one-hot encoding), a numpy array numeric
preprocessing only. So each baseline runs on every task of the suite, numeric or mixed-type.
"""

from __future__ import annotations

import random
from typing import Any

PREPROCESS = """\
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
regression = np.issubdtype(np.asarray(y_train).dtype, np.floating)
if isinstance(x_train, pd.DataFrame):
    x_train = x_train.copy()
    for column in x_train.columns:
        if x_train[column].dtype == bool:
            x_train[column] = x_train[column].astype(float)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
         make_column_selector(dtype_include="number")),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", min_frequency=5,
                                            sparse_output=False)),
         make_column_selector(dtype_exclude="number")),
    ])
else:
    prep = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
"""

MODELS = {
    "logreg": (
        "from sklearn.linear_model import LogisticRegression, Ridge\n"
        "est = Ridge() if regression else LogisticRegression(max_iter=2000)\n"
    ),
    "random-forest": (
        "from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor\n"
        "est = (RandomForestRegressor if regression else RandomForestClassifier)(\n"
        "    n_estimators=200, min_samples_leaf=2, n_jobs=1, random_state=0)\n"
    ),
    "hist-gb": (
        "from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor\n"
        "est = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(\n"
        "    random_state=0)\n"
    ),
    "knn": (
        "from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor\n"
        "est = (KNeighborsRegressor if regression else KNeighborsClassifier)(n_neighbors=25)\n"
    ),
    "naive-bayes": (
        "from sklearn.naive_bayes import GaussianNB\n"
        "from sklearn.linear_model import Ridge\n"
        "est = Ridge() if regression else GaussianNB()\n"
    ),
    "tree": (
        "from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor\n"
        "est = (DecisionTreeRegressor if regression else DecisionTreeClassifier)(\n"
        "    max_depth=6, random_state=0)\n"
    ),
}
FIT = "model = make_pipeline(prep, est)\nmodel.fit(x_train, y_train)\n"

# The fallback after an error: the plainest body that works on every task.
FALLBACK = "logreg"


def body(model: str) -> str:
    """The ``build_model`` body of a fixed baseline (indented for the template)."""
    if model not in MODELS:
        raise KeyError(f"unknown baseline model {model!r}; known: {', '.join(MODELS)}")
    text = PREPROCESS + MODELS[model] + FIT
    return "".join("    " + line if line else line for line in text.splitlines(keepends=True))


class FixedModelAgent:
    """Always writes the same pipeline; after an error, falls back to the logistic baseline."""

    def __init__(self, model: str) -> None:
        self.name = model
        self.code = body(model)
        self.fallback = body(FALLBACK)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        failed = bool(info.get("status")) and info.get("status") != "ok"
        return _submitted(self.fallback if failed else self.code, info)


class RandomTemplateAgent:
    """Samples one pipeline of the menu per step (seeded by the episode seed)."""

    name = "random-template"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.menu = [body(m) for m in MODELS]

    def reset(self, *, task: str, seed: int) -> None:
        self._rng = random.Random(f"{task}:{seed}")

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return _submitted(self._rng.choice(self.menu), info)


def _submitted(body: str, info: dict[str, Any]) -> str:
    """In ``DataSciNotebook-v0`` (its info counts cells) a fixed pipeline is submitted at once,
    without exploring: the same body, scored on the same split as in ``DataSci-v0``."""
    return f"%%submit\n{body}" if "cells_left" in info else body


BASELINES = ("logreg", "random-forest", "hist-gb", "random-template")


def make_baseline(name: str) -> Any:
    """A baseline agent by name: one of :data:`MODELS` or ``random-template``."""
    if name == "random-template":
        return RandomTemplateAgent()
    return FixedModelAgent(name)


# The agent factories that pyproject.toml registers in the ``etpo_gym.agents`` entry-point group
# (the names on the leaderboard): one zero-argument function per name.


def logreg() -> FixedModelAgent:
    """Logistic regression (ridge for regression) after the shared preprocessing."""
    return FixedModelAgent("logreg")


def random_forest() -> FixedModelAgent:
    """A 200-tree random forest after the shared preprocessing."""
    return FixedModelAgent("random-forest")


def hist_gb() -> FixedModelAgent:
    """Histogram gradient boosting after the shared preprocessing."""
    return FixedModelAgent("hist-gb")


def knn() -> FixedModelAgent:
    """25-nearest neighbours after the shared preprocessing."""
    return FixedModelAgent("knn")


def naive_bayes() -> FixedModelAgent:
    """Gaussian naive Bayes (ridge for regression) after the shared preprocessing."""
    return FixedModelAgent("naive-bayes")


def tree() -> FixedModelAgent:
    """A depth-6 decision tree after the shared preprocessing."""
    return FixedModelAgent("tree")


def random_template() -> RandomTemplateAgent:
    """One pipeline of the menu per step, seeded by the episode."""
    return RandomTemplateAgent()
