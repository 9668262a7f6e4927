"""Prompts, action parsing and host-side scoring (no kernels)."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from sklearn.metrics import r2_score, roc_auc_score

import etpo_gym
from etpo_gym import prompts
from etpo_gym.errors import ConfigError
from etpo_gym.scoring import PredictionError, check_predictions, score


@pytest.fixture(scope="module")
def cancer():
    return etpo_gym.get_task("breast_cancer")


@pytest.mark.parametrize("style", prompts.PROMPT_STYLES)
def test_prompt_describes_task_and_ends_with_template(cancer, style):
    text = prompts.initial_prompt(cancer, style, n_train=398)
    assert text.endswith(prompts.TEMPLATE)
    assert "(398, 30)" in text and "numpy float array" in text and "predict_proba" in text
    assert ("Columns (name" in text) == (style == "rich")
    if style == "rich":
        assert "Class balance:" in text and "mean radius" in text


def test_reflection_prompt_has_code_error_and_template_last(cancer):
    text = prompts.reflection_prompt(cancer, "model = 1/0", "ZeroDivisionError: division by zero")
    assert "model = 1/0" in text and "ZeroDivisionError" in text
    assert text.index("ZeroDivisionError") < text.rindex("<FILL_ME>")
    assert text.endswith(prompts.TEMPLATE)


def test_unknown_style_is_named(cancer):
    with pytest.raises(ConfigError, match="prompt_style='long'"):
        prompts.initial_prompt(cancer, "long")


@pytest.mark.parametrize(
    "action",
    [
        "model = A()\nmodel.fit(x_train, y_train)",
        "    model = A()\n    model.fit(x_train, y_train)",
        "```python\nmodel = A()\nmodel.fit(x_train, y_train)\n```",
        "Sure!\n```\ndef build_model(x_train, y_train):\n    model = A()\n    return model\n```\nThanks",
        "import os\n\ndef build_model(x_train, y_train):\n\tmodel = A()\n\treturn model",
        "",
    ],
)
def test_action_to_code_always_yields_a_build_model_def(action):
    code = prompts.action_to_code(action)
    tree = ast.parse(code)
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert names == ["build_model"]
    assert "```" not in code


def test_fence_with_the_def_is_preferred():
    text = "```bash\npip install x\n```\n```python\ndef build_model(x, y):\n    return 1\n```"
    assert prompts.strip_fences(text).startswith("def build_model")


def test_check_predictions_accepts_valid_and_rejects_bad(cancer):
    good = np.linspace(0, 1, 10)
    assert check_predictions(good, cancer, 10).dtype == np.float64
    for bad, needle in [
        (np.zeros(9), "shape"),
        (np.full(10, np.nan), "NaN"),
        (np.full(10, 1.5), r"\[0, 1\]"),
        (np.array(["a"] * 10), "dtype"),
        (np.zeros((10, 2)), "shape"),
    ]:
        with pytest.raises(PredictionError, match=needle):
            check_predictions(bad, cancer, 10)


def test_scores_match_sklearn(cancer):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = rng.random(50)
    assert score(cancer, y, p) == roc_auc_score(y, p)
    wine = etpo_gym.get_task("wine")
    y3 = np.repeat([0, 1, 2], 10)
    p3 = rng.dirichlet(np.ones(3), size=30)
    expected = roc_auc_score(y3, p3, multi_class="ovo", average="macro")
    assert score(wine, y3, p3) == pytest.approx(expected)


def test_regression_scores_r2():
    regression = [t for t in etpo_gym.list_tasks() if t.task_type == "regression"]
    if not regression:
        pytest.skip("no regression task registered")
    task = regression[0]
    y = np.arange(10.0)
    pred = y + np.random.default_rng(1).normal(size=10)
    assert score(task, y, check_predictions(pred, task, 10)) == pytest.approx(r2_score(y, pred))
