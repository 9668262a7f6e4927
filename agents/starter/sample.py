"""Sampling bodies from a causal LM, and a quick in-process check that a body works.

:func:`sample_bodies` is what the validity benchmark and the build use to draw ``build_model``
bodies for a prompt. :func:`check_body` fits a body in *this* process on small toy data shaped
like a task (numpy or DataFrame with strings, booleans and NaNs; binary, multiclass or
regression): a fast stand-in for the env, used by the build and the tests. Only run code you
trust (the corpus, the starter's samples) through it; the env's sandbox is for everything else.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from etpo_gym.errors import ConfigError
from etpo_gym.prompts import action_to_code


def sample_bodies(
    model: Any,
    tokenizer: Any,
    prompt: str,
    n: int = 8,
    temperature: float = 0.8,
    top_k: int = 50,
    max_new_tokens: int = 192,
    seed: int = 0,
) -> list[str]:
    """Draw ``n`` completions of ``prompt`` (text up to the first EOS, special tokens removed).

    ``temperature=0`` decodes greedily (``n`` equal bodies). The prompt is left-truncated so that
    prompt + completion fit the model's context. The same ``seed`` gives the same bodies; the
    caller's global torch RNG state is left untouched.
    """
    import torch

    if n < 1:
        raise ConfigError(f"n={n!r} must be >= 1")
    if not temperature >= 0:
        raise ConfigError(f"temperature={temperature!r} must be >= 0 (0: greedy)")
    config = model.config
    context = int(
        getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 2048)
    )
    if not 0 < max_new_tokens < context:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r} must be in [1, {context - 1}]")
    # verbose=False: a prompt longer than the context is cut here, not an error to warn about
    ids = tokenizer(prompt, return_tensors="pt", verbose=False).input_ids
    ids = ids[:, -(context - max_new_tokens) :]
    device = next(model.parameters()).device
    greedy = temperature == 0
    ids = ids.to(device).repeat(1 if greedy else n, 1)
    eos = tokenizer.eos_token_id
    sampling = {"do_sample": False} if greedy else {
        "do_sample": True, "temperature": float(temperature), "top_k": int(top_k)
    }  # fmt: skip
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=int(max_new_tokens),
            eos_token_id=eos,
            pad_token_id=eos,
            **sampling,
        )
    if greedy:
        out = out.repeat(n, 1)
    bodies = []
    for row in out[:, ids.shape[1] :].tolist():
        if eos in row:
            row = row[: row.index(eos)]
        bodies.append(tokenizer.decode(row, skip_special_tokens=True))
    return bodies


def final_estimator(body: str) -> str:
    """The class name of the estimator a corpus-style body builds (``"?"`` if none is found).

    It is the call on the ``clf =``/``reg =`` line, or on the ``model =`` line when that line
    does not build a pipeline.
    """
    for line in body.splitlines():
        text = line.strip()
        for var in ("clf = ", "reg = ", "model = "):
            if text.startswith(var) and "make_pipeline" not in text and "(" in text:
                return text[len(var) :].split("(", 1)[0]
    return "?"


def toy_data(
    task_type: str, is_frame: bool, seed: int = 0, n_train: int = 160, n_eval: int = 80
) -> tuple[Any, np.ndarray, Any]:
    """``(x_train, y_train, x_eval)`` shaped like the env's inputs for such a task.

    DataFrames hold what real tables do: float columns with NaNs, an int column, string columns
    with NaNs (and a level in ``x_eval`` never seen in training), a bool column and an object
    column of booleans with NaNs.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_eval
    num = rng.normal(size=(n, 6))
    if is_frame:
        city = rng.choice(np.array(["north", "south", "east", "west"]), size=n)
        frame = pd.DataFrame(
            {
                "age": np.round(20 + 50 * rng.random(n), 1),
                "income": num[:, 0] * 1e4 + 5e4,
                "visits": rng.integers(0, 20, size=n),
                "score": num[:, 1],
                "city": city,
                "plan": rng.choice(np.array(["basic", "plus", "pro"]), size=n),
                "active": rng.random(n) < 0.5,
                "vip": pd.array(rng.random(n) < 0.2, dtype=object),
            }
        )
        frame.loc[rng.random(n) < 0.1, "age"] = np.nan
        frame.loc[rng.random(n) < 0.1, "income"] = np.nan
        frame.loc[rng.random(n) < 0.1, "city"] = np.nan
        frame.loc[rng.random(n) < 0.1, "vip"] = np.nan
        frame.loc[n_train + 1, "city"] = "space"  # unseen level at predict time
        signal = num[:, 1] + (city == "north") + 0.5 * num[:, 0]
        x: Any = frame
    else:
        signal = num[:, 0] - num[:, 1] + 0.5 * num[:, 2]
        x = num * np.array([1.0, 10.0, 0.1, 100.0, 1.0, 1000.0])
    signal = signal + 0.5 * rng.normal(size=n)
    if task_type == "regression":
        y = signal.astype(float)
    else:
        k = 2 if task_type == "binary" else 3
        y = np.searchsorted(np.quantile(signal, np.linspace(0, 1, k + 1)[1:-1]), signal)
        y = y.astype(np.int64)
    if is_frame:
        return x.iloc[:n_train].reset_index(drop=True), y[:n_train], x.iloc[n_train:]
    return x[:n_train], y[:n_train], x[n_train:]


def check_body(body: str, task_type: str, is_frame: bool, seed: int = 0) -> str | None:
    """Fit ``body`` in-process on :func:`toy_data`; ``None`` if it works, else the error.

    "Works" means what the env needs: ``build_model`` returns a model whose ``predict_proba``
    (classification) or ``predict`` (regression) gives finite values of the right shape.
    """
    x_train, y_train, x_eval = toy_data(task_type, is_frame, seed)
    namespace: dict[str, Any] = {}
    try:
        # One thread: with torch loaded, scikit-learn's OpenMP pools (HistGradientBoosting)
        # otherwise fight torch's and a 0.2 s fit can take 20 s on a small machine.
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")
            exec(compile(action_to_code(body), "<body>", "exec"), namespace)
            model = namespace["build_model"](x_train, y_train)
            if task_type == "regression":
                pred = np.asarray(model.predict(x_eval), dtype=float)
                expected: tuple[int, ...] = (len(x_eval),)
            else:
                pred = np.asarray(model.predict_proba(x_eval), dtype=float)
                expected = (len(x_eval), len(np.unique(y_train)))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if pred.shape != expected:
        return f"InvalidPredictions: shape {pred.shape}, expected {expected}"
    if not np.all(np.isfinite(pred)):
        return "InvalidPredictions: NaN or infinite values"
    return None
