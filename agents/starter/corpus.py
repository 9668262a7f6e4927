"""A seeded generator of plausible ``build_model`` bodies paired with the env's prompts.

The starter policy is pretrained on this corpus, so its style is the policy's style. Every body
follows ONE layout, because a tiny LM copies what it sees and mixed conventions (``Pipeline`` vs
``make_pipeline``, combined vs single imports) were the main source of invalid samples:

* one ``from sklearn.<module> import <Name>`` line per name, sorted, then a blank line;
* numpy inputs: ``model = <Estimator>(...)`` or ``clf = <Estimator>(...)`` followed by
  ``model = make_pipeline(<steps>, clf)``;
* DataFrame inputs: ``numeric = ...``, ``categorical = ...``, ``prep = make_column_transformer(...)``
  over ``make_column_selector(dtype_include="number")`` / ``dtype_exclude="number"``, then
  ``model = make_pipeline(prep, clf)``;
* ``model.fit(x_train, y_train)`` and ``return model``, indented 4 spaces (a body for
  ``<FILL_ME>``).

Every body is valid for its prompt (the tests fit a sample of them), but quality varies on
purpose — scaled or not, imputed well or crudely, categorical columns one-hot encoded, ordinal
encoded or dropped, class weights or not, regularisation and feature selection or not, strong or
weak estimators and hyperparameters — so that RL has room to improve on the prior.

Prompts are the env's own (:func:`etpo_gym.prompts.initial_prompt` and
:func:`~etpo_gym.prompts.reflection_prompt`) for the built-in tasks and for generated fake tasks,
so that the policy conditions on the prompt's facts (numpy array or DataFrame, classification or
regression) rather than memorising a few prompts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from etpo_gym import prompts
from etpo_gym.errors import ConfigError
from etpo_gym.tasks.base import Dataset, Task, holdout_split

INDENT = "    "

#: Estimators that reject sparse input: on DataFrames they get a dense one-hot encoding.
DENSE_ONLY = frozenset(
    {
        "GaussianNB",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
        "LinearDiscriminantAnalysis",
    }
)
#: Estimators that handle missing values natively: their numeric branch may skip imputation.
NAN_NATIVE = frozenset({"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"})
#: Estimators that are much better (or much faster) on scaled features.
SCALE_SENSITIVE = frozenset(
    {
        "LogisticRegression",
        "SGDClassifier",
        "SVC",
        "KNeighborsClassifier",
        "MLPClassifier",
        "Ridge",
        "Lasso",
        "ElasticNet",
        "SVR",
        "KNeighborsRegressor",
    }
)
#: Estimators always scaled: unscaled they converge slowly enough to risk the step timeout.
ALWAYS_SCALED = frozenset({"SVC", "SVR"})

_MODULE = {
    "LogisticRegression": "sklearn.linear_model",
    "SGDClassifier": "sklearn.linear_model",
    "Ridge": "sklearn.linear_model",
    "Lasso": "sklearn.linear_model",
    "ElasticNet": "sklearn.linear_model",
    "LinearRegression": "sklearn.linear_model",
    "RandomForestClassifier": "sklearn.ensemble",
    "ExtraTreesClassifier": "sklearn.ensemble",
    "GradientBoostingClassifier": "sklearn.ensemble",
    "HistGradientBoostingClassifier": "sklearn.ensemble",
    "AdaBoostClassifier": "sklearn.ensemble",
    "BaggingClassifier": "sklearn.ensemble",
    "RandomForestRegressor": "sklearn.ensemble",
    "ExtraTreesRegressor": "sklearn.ensemble",
    "GradientBoostingRegressor": "sklearn.ensemble",
    "HistGradientBoostingRegressor": "sklearn.ensemble",
    "DecisionTreeClassifier": "sklearn.tree",
    "DecisionTreeRegressor": "sklearn.tree",
    "KNeighborsClassifier": "sklearn.neighbors",
    "KNeighborsRegressor": "sklearn.neighbors",
    "SVC": "sklearn.svm",
    "SVR": "sklearn.svm",
    "GaussianNB": "sklearn.naive_bayes",
    "MLPClassifier": "sklearn.neural_network",
    "LinearDiscriminantAnalysis": "sklearn.discriminant_analysis",
    "StandardScaler": "sklearn.preprocessing",
    "MinMaxScaler": "sklearn.preprocessing",
    "RobustScaler": "sklearn.preprocessing",
    "OneHotEncoder": "sklearn.preprocessing",
    "OrdinalEncoder": "sklearn.preprocessing",
    "SimpleImputer": "sklearn.impute",
    "PCA": "sklearn.decomposition",
    "SelectPercentile": "sklearn.feature_selection",
    "VarianceThreshold": "sklearn.feature_selection",
    "f_classif": "sklearn.feature_selection",
    "f_regression": "sklearn.feature_selection",
    "make_pipeline": "sklearn.pipeline",
    "make_column_transformer": "sklearn.compose",
    "make_column_selector": "sklearn.compose",
}

CLASSIFIERS: tuple[str, ...] = (
    "LogisticRegression",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "DecisionTreeClassifier",
    "KNeighborsClassifier",
    "SVC",
    "GaussianNB",
    "AdaBoostClassifier",
    "MLPClassifier",
    "LinearDiscriminantAnalysis",
    "SGDClassifier",
    "BaggingClassifier",
)
REGRESSORS: tuple[str, ...] = (
    "Ridge",
    "Lasso",
    "ElasticNet",
    "LinearRegression",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "DecisionTreeRegressor",
    "KNeighborsRegressor",
    "SVR",
)


@dataclass(frozen=True)
class Body:
    """One generated body and the decisions it embodies."""

    text: str  #: the body, 4-space indented, ending with ``return model``
    estimator: str  #: the final estimator's class name
    steps: tuple[str, ...]  #: every other scikit-learn name it uses, sorted


@dataclass(frozen=True)
class Sample:
    """A (prompt, body) training pair."""

    prompt: str
    body: str
    task: str
    task_type: str
    is_frame: bool
    estimator: str


# -- estimators ---------------------------------------------------------------------------------


def _pick(rng: random.Random, options: Sequence[object]) -> object:
    return options[rng.randrange(len(options))]


def _maybe(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def _estimator_kwargs(name: str, rng: random.Random, task_type: str) -> list[str]:
    """Keyword arguments (``"key=value"`` strings, fixed order) for one estimator."""
    kw: list[str] = []
    balanced = task_type != "regression" and _maybe(rng, 0.25)
    if name == "LogisticRegression":
        if _maybe(rng, 0.6):
            kw.append(f"C={_pick(rng, ['0.01', '0.1', '1.0', '10.0'])}")
        if _maybe(rng, 0.15):  # L1: regularisation that also selects features
            kw += ["l1_ratio=1.0", 'solver="saga"']
        if balanced:
            kw.append('class_weight="balanced"')
        kw.append(f"max_iter={_pick(rng, [1000, 2000])}")
    elif name == "SGDClassifier":
        kw.append(f'loss="{_pick(rng, ["log_loss", "modified_huber"])}"')
        if _maybe(rng, 0.5):
            kw.append(f"alpha={_pick(rng, ['0.0001', '0.001', '0.01'])}")
        if _maybe(rng, 0.3):
            kw.append('penalty="elasticnet"')
        if balanced:
            kw.append('class_weight="balanced"')
        kw += ["max_iter=1000", "random_state=0"]
    elif name in ("RandomForestClassifier", "ExtraTreesClassifier"):
        kw.append(f"n_estimators={_pick(rng, [50, 100, 200, 300, 500])}")
        if _maybe(rng, 0.5):
            kw.append(f"max_depth={_pick(rng, [3, 5, 8, 12, 20])}")
        if _maybe(rng, 0.3):
            kw.append(f"min_samples_leaf={_pick(rng, [2, 5, 10])}")
        if _maybe(rng, 0.2):
            kw.append("max_features=" + str(_pick(rng, ["0.5", '"sqrt"', '"log2"'])))
        if balanced:
            kw.append('class_weight="balanced"')
        kw.append("random_state=0")
    elif name in ("RandomForestRegressor", "ExtraTreesRegressor"):
        kw.append(f"n_estimators={_pick(rng, [50, 100, 200, 300, 500])}")
        if _maybe(rng, 0.5):
            kw.append(f"max_depth={_pick(rng, [3, 5, 8, 12, 20])}")
        if _maybe(rng, 0.3):
            kw.append(f"min_samples_leaf={_pick(rng, [2, 5, 10])}")
        kw.append("random_state=0")
    elif name in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        kw.append(f"n_estimators={_pick(rng, [50, 100, 200])}")
        kw.append(f"learning_rate={_pick(rng, ['0.03', '0.05', '0.1', '0.2'])}")
        kw.append(f"max_depth={_pick(rng, [2, 3, 4, 5])}")
        if _maybe(rng, 0.3):
            kw.append(f"subsample={_pick(rng, ['0.7', '0.8'])}")
        kw.append("random_state=0")
    elif name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        kw.append(f"max_iter={_pick(rng, [100, 200, 300, 500])}")
        kw.append(f"learning_rate={_pick(rng, ['0.03', '0.05', '0.1', '0.2'])}")
        if _maybe(rng, 0.4):
            kw.append(f"max_leaf_nodes={_pick(rng, [15, 31, 63])}")
        if _maybe(rng, 0.3):
            kw.append(f"l2_regularization={_pick(rng, ['0.1', '1.0'])}")
        if balanced:
            kw.append('class_weight="balanced"')
        kw.append("random_state=0")
    elif name in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
        kw.append(f"max_depth={_pick(rng, [2, 3, 4, 6, 8, 12])}")
        if _maybe(rng, 0.4):
            kw.append(f"min_samples_leaf={_pick(rng, [1, 5, 10, 20])}")
        if balanced:
            kw.append('class_weight="balanced"')
        kw.append("random_state=0")
    elif name in ("KNeighborsClassifier", "KNeighborsRegressor"):
        kw.append(f"n_neighbors={_pick(rng, [3, 5, 7, 11, 15, 25])}")
        if _maybe(rng, 0.4):
            kw.append('weights="distance"')
    elif name == "SVC":
        kw.append(f"C={_pick(rng, ['0.1', '1.0', '3.0', '10.0'])}")
        if _maybe(rng, 0.3):
            kw.append("gamma=" + str(_pick(rng, ["0.01", "0.1", '"scale"'])))
        if balanced:
            kw.append('class_weight="balanced"')
        kw += ["probability=True", "random_state=0"]
    elif name == "SVR":
        kw.append(f"C={_pick(rng, ['0.1', '1.0', '3.0', '10.0'])}")
        if _maybe(rng, 0.3):
            kw.append(f"epsilon={_pick(rng, ['0.01', '0.1', '0.5'])}")
    elif name == "GaussianNB":
        if _maybe(rng, 0.3):
            kw.append(f"var_smoothing={_pick(rng, ['1e-08', '1e-06'])}")
    elif name == "AdaBoostClassifier":
        kw.append(f"n_estimators={_pick(rng, [50, 100, 200])}")
        if _maybe(rng, 0.5):
            kw.append(f"learning_rate={_pick(rng, ['0.1', '0.5', '1.0'])}")
        kw.append("random_state=0")
    elif name == "BaggingClassifier":
        kw.append(f"n_estimators={_pick(rng, [10, 25, 50])}")
        kw.append("random_state=0")
    elif name == "MLPClassifier":
        kw.append(f"hidden_layer_sizes={_pick(rng, ['(32,)', '(64,)', '(100,)', '(64, 32)'])}")
        if _maybe(rng, 0.5):
            kw.append(f"alpha={_pick(rng, ['0.0001', '0.001', '0.01'])}")
        if _maybe(rng, 0.3):
            kw.append("early_stopping=True")
        kw += [f"max_iter={_pick(rng, [300, 500])}", "random_state=0"]
    elif name == "LinearDiscriminantAnalysis":
        if _maybe(rng, 0.4):
            kw += ['solver="lsqr"', 'shrinkage="auto"']
    elif name == "Ridge":
        if _maybe(rng, 0.7):
            kw.append(f"alpha={_pick(rng, ['0.1', '1.0', '3.0', '10.0'])}")
    elif name == "Lasso":
        kw.append(f"alpha={_pick(rng, ['0.001', '0.01', '0.1', '1.0'])}")
        kw.append("max_iter=5000")
    elif name == "ElasticNet":
        kw.append(f"alpha={_pick(rng, ['0.001', '0.01', '0.1'])}")
        kw.append(f"l1_ratio={_pick(rng, ['0.2', '0.5', '0.8'])}")
        kw.append("max_iter=5000")
    elif name == "LinearRegression":
        pass
    else:  # pragma: no cover - the tuples above are the whole menu
        raise KeyError(name)
    return kw


def _call(name: str, kwargs: Sequence[str] = ()) -> str:
    return f"{name}({', '.join(kwargs)})"


def _imports(names: set[str]) -> list[str]:
    lines = sorted(f"from {_MODULE[n]} import {n}" for n in names)
    return [INDENT + line for line in lines]


def _choose_estimator(rng: random.Random, task_type: str) -> str:
    return str(_pick(rng, REGRESSORS if task_type == "regression" else CLASSIFIERS))


def _scaler(rng: random.Random, estimator: str) -> str | None:
    p = 1.0 if estimator in ALWAYS_SCALED else 0.75 if estimator in SCALE_SENSITIVE else 0.2
    if not _maybe(rng, p):
        return None
    return str(_pick(rng, ["StandardScaler", "StandardScaler", "MinMaxScaler", "RobustScaler"]))


def _array_body(rng: random.Random, task_type: str, estimator: str) -> Body:
    used: set[str] = {estimator}
    steps: list[str] = []
    scaler = _scaler(rng, estimator)
    if scaler:
        used.add(scaler)
        steps.append(_call(scaler))
    selection = rng.random()
    if selection < 0.12:  # feature selection, univariate
        score = "f_regression" if task_type == "regression" else "f_classif"
        used |= {"SelectPercentile", score}
        steps.append(f"SelectPercentile({score}, percentile={_pick(rng, [20, 30, 50, 75])})")
    elif selection < 0.18:
        used.add("PCA")
        steps.append(f"PCA(n_components={_pick(rng, ['0.9', '0.95', '0.99'])})")
    elif selection < 0.21:
        used.add("VarianceThreshold")
        steps.append("VarianceThreshold()")
    kwargs = _estimator_kwargs(estimator, rng, task_type)
    lines: list[str] = []
    if steps:
        var = "reg" if task_type == "regression" else "clf"
        used.add("make_pipeline")
        lines.append(f"{var} = {_call(estimator, kwargs)}")
        lines.append(f"model = make_pipeline({', '.join([*steps, var])})")
    else:
        lines.append(f"model = {_call(estimator, kwargs)}")
    return _finish(used, lines, estimator)


def _frame_body(rng: random.Random, task_type: str, estimator: str) -> Body:
    used: set[str] = {
        estimator,
        "make_pipeline",
        "make_column_transformer",
        "make_column_selector",
    }
    lines: list[str] = []

    # Numeric columns: impute (unless the estimator handles NaN), maybe scale.
    numeric_steps: list[str] = []
    if estimator not in NAN_NATIVE or _maybe(rng, 0.4):
        used.add("SimpleImputer")
        strategy = _pick(rng, ["median", "median", "mean", "most_frequent", "constant"])
        args = [f'strategy="{strategy}"']
        if strategy == "constant":
            args.append("fill_value=0")
        if _maybe(rng, 0.2):
            args.append("add_indicator=True")
        numeric_steps.append(_call("SimpleImputer", args))
    scaler = _scaler(rng, estimator)
    if scaler:
        used.add(scaler)
        numeric_steps.append(_call(scaler))
    if numeric_steps:
        lines.append(f"numeric = make_pipeline({', '.join(numeric_steps)})")
    else:
        lines.append('numeric = "passthrough"')

    # Other columns (strings, booleans, categories): one-hot, ordinal codes, or dropped.
    encoding = rng.random()
    dense = estimator in DENSE_ONLY
    categorical_steps: list[str] = []
    if encoding < 0.1:
        pass  # dropped: a weaker choice whenever those columns carry signal
    elif (encoding < 0.3 and estimator not in SCALE_SENSITIVE) or encoding < 0.18:
        used.add("OrdinalEncoder")
        if estimator not in NAN_NATIVE:
            used.add("SimpleImputer")
            categorical_steps.append('SimpleImputer(strategy="most_frequent")')
        categorical_steps.append(
            'OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)'
        )
    else:
        used.add("OneHotEncoder")
        if _maybe(rng, 0.5):
            used.add("SimpleImputer")
            categorical_steps.append('SimpleImputer(strategy="most_frequent")')
        args = ['handle_unknown="ignore"']
        if dense or _maybe(rng, 0.25):
            args.append(f"max_categories={_pick(rng, [10, 20, 30])}")
        if dense:
            args.append("sparse_output=False")
        categorical_steps.append(_call("OneHotEncoder", args))
    if categorical_steps:
        lines.append(f"categorical = make_pipeline({', '.join(categorical_steps)})")
    lines.append("prep = make_column_transformer(")
    lines.append(f'{INDENT}(numeric, make_column_selector(dtype_include="number")),')
    if categorical_steps:
        lines.append(f'{INDENT}(categorical, make_column_selector(dtype_exclude="number")),')
    lines.append(")")

    var = "reg" if task_type == "regression" else "clf"
    lines.append(f"{var} = {_call(estimator, _estimator_kwargs(estimator, rng, task_type))}")
    lines.append(f"model = make_pipeline(prep, {var})")
    return _finish(used, lines, estimator)


def _finish(used: set[str], lines: list[str], estimator: str) -> Body:
    text = "\n".join(
        [
            *_imports(used),
            "",
            *(INDENT + line for line in lines),
            f"{INDENT}model.fit(x_train, y_train)",
            f"{INDENT}return model",
        ]
    )
    return Body(text=text, estimator=estimator, steps=tuple(sorted(used - {estimator})))


def generate_body(
    rng: random.Random, task_type: str, is_frame: bool, estimator: str | None = None
) -> Body:
    """One body valid for a task of ``task_type`` whose ``x_train`` is a DataFrame or not."""
    if task_type not in ("binary", "multiclass", "regression"):
        raise ConfigError(
            f"task_type={task_type!r} is not one of ('binary', 'multiclass', 'regression')"
        )
    estimator = estimator or _choose_estimator(rng, task_type)
    if is_frame:
        return _frame_body(rng, task_type, estimator)
    return _array_body(rng, task_type, estimator)


# -- prompts ------------------------------------------------------------------------------------

_DOMAINS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # (name, what the rows are, what to predict, binary class names)
    (
        "customer_churn",
        "Subscription customers' usage and billing",
        "who cancels",
        ("stays", "churns"),
    ),
    (
        "loan_default",
        "Loan applications with income and credit history",
        "default",
        ("repaid", "default"),
    ),
    (
        "credit_fraud",
        "Card transactions with amounts and merchant codes",
        "fraud",
        ("legit", "fraud"),
    ),
    (
        "heart_disease",
        "Patients' vital signs and lab results",
        "heart disease",
        ("healthy", "disease"),
    ),
    (
        "diabetes_onset",
        "Patients' glucose, BMI and age",
        "diabetes onset",
        ("negative", "positive"),
    ),
    ("spam_filter", "Word and character frequencies of e-mails", "spam", ("ham", "spam")),
    ("employee_attrition", "Employees' roles, pay and tenure", "who leaves", ("stays", "leaves")),
    (
        "click_through",
        "Ad impressions with placement and user features",
        "a click",
        ("no_click", "click"),
    ),
    ("machine_failure", "Sensor readings of industrial machines", "a failure", ("ok", "failure")),
    (
        "titanic_survival",
        "Passengers' class, age, fare and cabin",
        "survival",
        ("died", "survived"),
    ),
    (
        "hotel_cancellation",
        "Hotel bookings with lead time and deposits",
        "cancellation",
        ("kept", "cancelled"),
    ),
    (
        "insurance_claim",
        "Policy holders' vehicles and driving records",
        "a claim",
        ("no_claim", "claim"),
    ),
    (
        "star_quality",
        "Telescope measurements of candidate signals",
        "a real pulsar",
        ("noise", "pulsar"),
    ),
    (
        "mushroom_edibility",
        "Mushroom cap, gill and stalk descriptions",
        "poisonous",
        ("edible", "poisonous"),
    ),
    (
        "income_bracket",
        "Census records with education and occupation",
        "income over 50k",
        ("low", "high"),
    ),
    ("water_potability", "Water samples' chemistry", "potable water", ("unsafe", "safe")),
    ("stroke_risk", "Patients' history, lifestyle and glucose", "a stroke", ("no", "yes")),
    (
        "booking_no_show",
        "Clinic appointments with patient details",
        "a no-show",
        ("showed", "no_show"),
    ),
    ("wafer_defect", "Process measurements of semiconductor wafers", "a defect", ("pass", "fail")),
    ("kidney_stones", "Urine analysis results", "kidney stones", ("0", "1")),
)
_MULTICLASS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "iris_species",
        "Flower petal and sepal measurements; predict the species",
        ("setosa", "versicolor", "virginica"),
    ),
    (
        "glass_type",
        "Oxide content of glass fragments; predict the glass type",
        ("building", "vehicle", "container", "tableware", "headlamp"),
    ),
    (
        "digit_strokes",
        "Pen-stroke features of handwritten digits; predict the digit",
        tuple(str(i) for i in range(10)),
    ),
    (
        "forest_cover",
        "Terrain measurements of forest cells; predict the cover type",
        ("spruce", "pine", "cottonwood", "aspen", "fir", "willow", "krummholz"),
    ),
    (
        "customer_segment",
        "Shoppers' spending by category; predict the segment",
        ("budget", "regular", "premium"),
    ),
    (
        "fault_kind",
        "Steel plate surface measurements; predict the fault kind",
        ("pastry", "scratch", "bump", "stain", "other"),
    ),
    (
        "weather_type",
        "Daily weather station readings; predict the weather type",
        ("sunny", "rainy", "snowy", "cloudy"),
    ),
    ("grade_level", "Students' scores and habits; predict the grade", ("A", "B", "C", "D")),
    (
        "sleep_disorder",
        "Health and lifestyle survey; predict the sleep disorder",
        ("none", "insomnia", "apnea"),
    ),
    (
        "vehicle_silhouette",
        "Shape features of vehicle silhouettes; predict the vehicle",
        ("bus", "opel", "saab", "van"),
    ),
)
_REGRESSION: tuple[tuple[str, str], ...] = (
    ("house_prices", "Houses' size, age and location; predict the sale price"),
    ("bike_demand", "Hourly weather and calendar data; predict the number of rentals"),
    ("energy_load", "Building shapes and glazing; predict the heating load"),
    ("concrete_strength", "Concrete mix ingredients and age; predict the compressive strength"),
    ("car_mpg", "Car engine and weight data; predict the fuel economy"),
    ("insurance_cost", "Policy holders' age, BMI and habits; predict the yearly charges"),
    ("delivery_time", "Orders with distance and traffic; predict the delivery time"),
    ("crop_yield", "Fields' soil, rainfall and fertiliser; predict the yield"),
    (
        "disease_progression",
        "Patients' baseline measurements; predict disease progression after a year",
    ),
    ("salary", "Job postings with role, seniority and location; predict the salary"),
)
_HINTS = ("", "", " Many features are noise.", " Features are on very different scales.")
_CLASS_HINTS = (" The classes are imbalanced.",)
_FRAME_HINTS = (" Some values are missing.", " Several columns are categorical.")


def _fake_task(rng: random.Random) -> tuple[Task, int]:
    """A task that exists only to be described in a prompt (its dataset has no rows)."""
    kind = rng.random()
    is_frame = _maybe(rng, 0.45)
    n_features = int(_pick(rng, [4, 5, 6, 8, 9, 10, 12, 13, 16, 20, 24, 30, 40, 54, 64]))
    n_train = int(_pick(rng, [80, 120, 150, 210, 300, 398, 500, 700, 1000, 1400, 2500, 6085]))
    hints = _HINTS + (_FRAME_HINTS if is_frame else ()) + (_CLASS_HINTS if kind < 0.8 else ())
    hint = str(_pick(rng, hints))
    class_names: list[str] | None
    if kind < 0.55:
        name, rows, what, classes = _DOMAINS[rng.randrange(len(_DOMAINS))]
        description = f"{rows}; predict {what}.{hint}"
        task_type, metric, class_names = "binary", "roc_auc", list(classes)
    elif kind < 0.8:
        name, text, classes = _MULTICLASS[rng.randrange(len(_MULTICLASS))]
        description = f"{text}.{hint}"
        task_type, metric, class_names = "multiclass", "roc_auc", list(classes)
    else:
        name, text = _REGRESSION[rng.randrange(len(_REGRESSION))]
        description = f"{text}.{hint}"
        task_type, metric, class_names = "regression", "r2", None
    if _maybe(rng, 0.3):
        name = f"{name}_{_pick(rng, ['v2', 'small', 'lite', 'full', 'kaggle', 'synthetic'])}"
    features = [f"f{i}" for i in range(n_features)]
    X: np.ndarray | pd.DataFrame
    X = pd.DataFrame(columns=features) if is_frame else np.empty((0, n_features))
    data = Dataset(X=X, y=np.empty(0), feature_names=features, class_names=class_names)
    task = Task(name, description, task_type, metric, loader=lambda: data, source="synthetic")
    return task, n_train


def builtin_tasks() -> list[tuple[Task, int]]:
    """The env's built-in tasks with the training-row count their prompts show (holdout split)."""
    import etpo_gym

    out = []
    for task in etpo_gym.list_tasks():
        train_idx, _ = holdout_split(task.data.y, 0, 0.3, stratify=task.task_type != "regression")
        out.append((task, len(train_idx)))
    return out


_BAD_KINDS = ("array_on_frame", "regressor_on_classes", "missing_import", "no_proba")


def _failed_attempt(rng: random.Random, task: Task, good: Body) -> tuple[str, str] | None:
    """A plausible wrong body for ``task`` and the error it would get, or ``None``."""
    kind = _pick(rng, _BAD_KINDS)
    is_frame, task_type = task.data.is_frame, task.task_type
    if kind == "array_on_frame" and is_frame:
        bad = generate_body(rng, task_type, is_frame=False)
        value = _pick(rng, ["'Europa'", "'male'", "'yes'", "'B/0/P'", "'high'"])
        if _maybe(rng, 0.5):
            error = f"ValueError: could not convert string to float: {value}"
        else:
            error = "ValueError: Input X contains NaN."
        line = "model.fit(x_train, y_train)"
    elif kind == "regressor_on_classes" and task_type != "regression":
        bad = generate_body(rng, "regression", is_frame)
        error = (
            f"AttributeError: {bad.estimator} has no predict_proba: ROC AUC needs class "
            "probabilities (e.g. SVC(probability=True), or another classifier)"
        )
        line = "raise AttributeError("
    elif kind == "missing_import" and good.steps:
        name = str(_pick(rng, [s for s in good.steps if s[0].isupper()] or ["make_pipeline"]))
        bad_lines = [
            ln for ln in good.text.splitlines() if not ln.strip().endswith(f"import {name}")
        ]
        bad = Body("\n".join(bad_lines), good.estimator, good.steps)
        error = f"NameError: name '{name}' is not defined"
        line = next((ln.strip() for ln in bad_lines if f"{name}(" in ln), "model = ...")
    elif kind == "no_proba" and task_type != "regression":
        bad = generate_body(rng, task_type, is_frame, estimator="SVC")
        bad = Body(bad.text.replace(", probability=True", ""), "SVC", bad.steps)
        error = "AttributeError: predict_proba is not available when probability=False"
        line = "raise AttributeError("
    else:
        return None
    code = prompts.action_to_code(bad.text)
    n = 1 + code.count("\n") // 2
    detail = (
        f'File "<agent>", line {n}, in build_model\n    {line}\n' if _maybe(rng, 0.6) else ""
    ) + error
    return code, detail


def iter_samples(
    seed: int,
    *,
    tasks: Sequence[tuple[Task, int]] | None = None,
    builtin_share: float = 0.3,
    reflection_share: float = 0.1,
) -> Iterator[Sample]:
    """An endless, seeded stream of (prompt, body) pairs.

    Args:
        seed: the same seed gives the same stream.
        tasks: ``(task, n_train)`` pairs whose prompts are used for ``builtin_share`` of the
            samples (default: :func:`builtin_tasks`); the rest describe generated fake tasks.
        builtin_share: share of samples on ``tasks``.
        reflection_share: share of samples whose prompt is a reflection prompt (a failed
            attempt and its error), answered by a valid body.
    """
    rng = random.Random(seed)
    tasks = list(builtin_tasks() if tasks is None else tasks)
    while True:
        if tasks and _maybe(rng, builtin_share):
            task, n_train = tasks[rng.randrange(len(tasks))]
        else:
            task, n_train = _fake_task(rng)
        body = generate_body(rng, task.task_type, task.data.is_frame)
        prompt = None
        if _maybe(rng, reflection_share):
            failed = _failed_attempt(rng, task, body)
            if failed is not None:
                prompt = prompts.reflection_prompt(task, *failed, n_train=n_train)
        if prompt is None:
            prompt = prompts.initial_prompt(task, n_train=n_train)
        yield Sample(
            prompt=prompt,
            body=body.text,
            task=task.name,
            task_type=task.task_type,
            is_frame=task.data.is_frame,
            estimator=body.estimator,
        )


def generate_corpus(
    n: int, seed: int = 0, *, tasks: Sequence[tuple[Task, int]] | None = None
) -> list[Sample]:
    """The first ``n`` samples of :func:`iter_samples` (deterministic in ``seed``)."""
    if n < 0:
        raise ConfigError(f"n={n!r} must be >= 0")
    stream = iter_samples(seed, tasks=tasks)
    return [next(stream) for _ in range(n)]
