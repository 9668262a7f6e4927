"""Prompts shown to the agent and the turning of an action (text) into a ``build_model`` function.

Two prompt styles:

* ``"etpo"`` — as the ETPO paper's data-science env: the task description, the type and shape of
  ``x_train``, the target, the metric, and the function template with ``<FILL_ME>``.
* ``"rich"`` — the same plus a table of columns (name, dtype, missing values, distinct values or
  range) and the class balance.

After a failed step, the observation is a *reflection prompt*: the previous code and a concise
error (type, message, traceback tail) followed by the same template, so that ``<FILL_ME>`` is
always the last thing the agent reads.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd

from etpo_gym.errors import ConfigError
from etpo_gym.tasks.base import Task

PROMPT_STYLES: tuple[str, ...] = ("etpo", "rich")
FILL_ME = "<FILL_ME>"
TEMPLATE = "def build_model(x_train, y_train):\n" + FILL_ME + "\n    return model\n"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(r"^def\s+build_model\s*\(", re.MULTILINE)


def check_style(style: str) -> str:
    if style not in PROMPT_STYLES:
        raise ConfigError(f"prompt_style={style!r} is not one of {PROMPT_STYLES}")
    return style


def _input_line(task: Task, n_train: int) -> str:
    data = task.data
    if data.is_frame:
        kind = "a pandas DataFrame (columns may hold strings, booleans and missing values)"
    else:
        kind = "a numpy float array"
    return f"`x_train` is {kind} of shape ({n_train}, {task.n_features})."


def _target_line(task: Task) -> str:
    if task.task_type == "regression":
        return "`y_train` is a numpy float array (a continuous target)."
    names = task.data.class_names or []
    shown = ", ".join(f"{i}={name}" for i, name in enumerate(names[:10]))
    more = ", ..." if len(names) > 10 else ""
    return f"`y_train` is a numpy int array of {len(names)} class codes ({shown}{more})."


def _goal_line(task: Task) -> str:
    if task.task_type == "regression":
        metric = "R^2" if task.metric == "r2" else "RMSE"
        return (
            f"The returned model is scored by {metric} of `model.predict(x_eval)` on held-out rows."
        )
    how = "one-vs-one macro ROC AUC" if task.task_type == "multiclass" else "ROC AUC"
    return (
        f"The returned model is scored by {how} of `model.predict_proba(x_eval)` on held-out rows, "
        "so it must provide `predict_proba`."
    )


def _column_table(task: Task) -> str:
    X = task.data.X
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=task.data.feature_names)
    lines = ["Columns (name: dtype, missing, values):"]
    for name in frame.columns[:60]:
        col = frame[name]
        missing = int(col.isna().sum())
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = f"range [{col.min():.4g}, {col.max():.4g}]" if col.notna().any() else "empty"
        else:
            values = f"{col.nunique(dropna=True)} distinct, e.g. " + ", ".join(
                repr(v) for v in col.dropna().unique()[:3]
            )
        lines.append(f"- {name}: {col.dtype}, {missing} missing, {values}")
    if len(frame.columns) > 60:
        lines.append(f"- ... and {len(frame.columns) - 60} more columns")
    if task.task_type != "regression":
        counts = np.bincount(task.data.y, minlength=task.n_classes or 0)
        share = ", ".join(f"{i}: {c / counts.sum():.1%}" for i, c in enumerate(counts[:10]))
        lines.append(f"Class balance: {share}.")
    return "\n".join(lines)


def initial_prompt(task: Task, style: str = "etpo", n_train: int | None = None) -> str:
    """The first observation of an episode on ``task``."""
    check_style(style)
    n_train = task.n_rows if n_train is None else n_train
    parts = [
        "You are an expert data scientist. Complete the Python function `build_model` below: "
        "replace <FILL_ME> with its body, which must fit a model on (x_train, y_train) and "
        "assign it to `model`. Import everything you use inside the function.",
        "",
        f"Task: {task.name}. {task.description}",
        _input_line(task, n_train),
        _target_line(task),
        _goal_line(task),
    ]
    if style == "rich":
        parts += ["", _column_table(task)]
    parts += ["", TEMPLATE]
    return "\n".join(parts)


#: First line of a notebook cell that is a submission (``DataSciNotebook-v0``).
SUBMIT_MARKER = "%%submit"


def notebook_prompt(
    task: Task, style: str, n_train: int, n_eval: int, budget: str, submit_marker: str
) -> str:
    """The first observation of a ``DataSciNotebook-v0`` episode: the task, the variables the
    kernel holds, how to submit, and the budget."""
    check_style(style)
    target = _target_line(task).replace("`y_train` is", "`y_train`:", 1)
    parts = [
        "You are an expert data scientist working in a Jupyter notebook. Explore the data, then "
        "submit a model.",
        "",
        f"Task: {task.name}. {task.description}",
        "The kernel has loaded the data: "
        + _input_line(task, n_train).replace("`x_train` is", "`x_train`:", 1),
        target,
        f"`x_eval`: the {n_eval} evaluation rows, same columns, no labels. "
        "numpy is imported as `np`, pandas as `pd`.",
        _goal_line(task),
    ]
    if style == "rich":
        parts += ["", _column_table(task)]
    parts += [
        "",
        "Each message you send is one code cell; you see its output (printed text, the value of "
        "the last expression, errors). Variables persist from cell to cell.",
        f"To submit, send a cell whose first line is `{submit_marker}`, followed by "
        "`def build_model(x_train, y_train):` returning a fitted model (or just the function's "
        "body, which assigns `model`); it may use what earlier cells defined. The env calls it on "
        "x_train, y_train and scores its predictions for x_eval on the hidden labels. "
        "(With tools: run_cell(code) runs a cell, submit(code) submits.)",
        f"Budget: {budget}. A scored submission ends the episode.",
    ]
    return "\n".join(parts)


def reflection_prompt(
    task: Task, code: str, error: str, style: str = "etpo", n_train: int | None = None
) -> str:
    """The observation after a failed step: the previous code, the error, then the template."""
    head = initial_prompt(task, style, n_train).rsplit(TEMPLATE, 1)[0].rstrip()
    return "\n".join(
        [
            head,
            "",
            "Your previous code:",
            code.rstrip(),
            "",
            "It failed with:",
            error.rstrip(),
            "",
            "Fix the problem and write the function again.",
            "",
            TEMPLATE,
        ]
    )


def strip_fences(text: str) -> str:
    """The code inside Markdown fences, if any (the block defining ``build_model`` first)."""
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    if not blocks:
        return text
    for block in blocks:
        if _DEF.search(block):
            return block
    return blocks[0]


def action_to_code(action: str) -> str:
    """Turn an action into the full source of ``def build_model``.

    The action may be a body for ``<FILL_ME>`` (any consistent indentation), a full function
    definition (with imports before it if wanted), either one wrapped in Markdown code fences.
    """
    text = strip_fences(str(action)).replace("\r\n", "\n").replace("\t", "    ")
    if _DEF.search(text):
        return text.strip("\n") + "\n"
    body = textwrap.dedent(text).strip("\n")
    if not body.strip():
        body = "pass"
    return (
        "def build_model(x_train, y_train):\n"
        + textwrap.indent(body, "    ")
        + "\n    return model\n"
    )
