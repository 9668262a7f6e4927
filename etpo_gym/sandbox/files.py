"""Host-side file handling in directories the code can write to: nothing here follows a symlink.

Every path below a directory the kernel can write is reached through a directory descriptor with
``O_NOFOLLOW``, so a symlink the code planted (``out -> /``, ``x_train.npy -> /etc/passwd``) is
refused, never followed; removal never raises because of what the code left behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etpo_gym.errors import ConfigError
from etpo_gym.sandbox import scratch

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def open_dir_nofollow(path: str | os.PathLike[str], root: str | os.PathLike[str] = "/") -> int:
    """Open directory ``path`` with ``O_NOFOLLOW`` at every component below ``root``.

    ``root`` (default ``/``) is trusted and opened as it is, links included: e.g.
    ``/proc/PID/root``, the root of a kernel that runs in a mount namespace of its own, whose
    files the host reaches only through that magic link. ``path`` is absolute (then relative to
    ``root``). Returns a descriptor the caller closes. Raises ``OSError`` (``ELOOP``,
    ``ENOTDIR``) if any component below ``root`` is a symlink or not a directory. Host-made
    roots are resolved (``realpath``) when they are created, so only components the code could
    have planted are ever refused.
    """
    parts = Path(path).parts
    if not parts or parts[0] != "/":
        raise ValueError(f"{path!r} is not an absolute path")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts[1:], start=1):
            last = index == len(parts) - 1
            flags = os.O_DIRECTORY | os.O_NOFOLLOW | (os.O_RDONLY if last else os.O_PATH)
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        if len(parts) == 1:
            child = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` and everything below it, whatever the code did there.

    Symlinks are removed, never followed; directories without permissions (``0o000``) or
    read-only ones are given back to their owner first; errors are swallowed (a leftover is
    better than a crashed owner).
    """
    path = Path(path)
    try:
        parent = open_dir_nofollow(path.parent)
    except (OSError, ValueError):
        return
    try:
        scratch.remove_entry(parent, path.name)
    finally:
        os.close(parent)


def clear_dir(dir_fd: int, name: str = ".") -> None:
    """Remove everything inside directory ``name`` (relative to ``dir_fd``), keeping it; the
    same care as :func:`remove_tree`."""
    scratch.clear_dir(dir_fd, name)


def _python_storage(values: Any) -> Any:
    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return values
    try:
        python = pd.StringDtype("python", na_value=dtype.na_value)
    except TypeError:  # pandas < 2.3: no na_value
        python = pd.StringDtype("python")
    return values.astype(python)


def python_strings(value: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """``value`` with its strings (values, column labels, index) stored as Python objects.

    Where pyarrow is installed (the ``trl`` extra brings it), pandas stores strings in Arrow
    arrays, and a pickle of them needs pyarrow to load: the sandbox image has none.
    """
    if isinstance(value, pd.Series):
        out = _python_storage(value)
    else:
        out = value.copy(deep=False)
        for i in range(out.shape[1]):
            column = out.iloc[:, i]
            converted = _python_storage(column)
            if converted is not column:
                out.isetitem(i, converted)
        out.columns = _python_storage(out.columns)
    if out is value:
        out = value.copy(deep=False)
    out.index = _python_storage(out.index)
    return out


def check_inputs(arrays: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` unless :func:`save_inputs` accepts ``arrays``: identifier names,
    numeric arrays or DataFrames/Series."""
    for name, value in arrays.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"data name {name!r} must be a Python identifier")
        if not isinstance(value, pd.DataFrame | pd.Series) and np.asarray(value).dtype == object:
            raise ConfigError(f"data {name!r}: object arrays are not accepted; use a DataFrame")


def save_inputs(directory: Path, arrays: Mapping[str, Any]) -> None:
    """Replace the contents of ``directory`` by ``arrays``: ``NAME.npy`` for arrays,
    ``NAME.pkl`` for DataFrames/Series, each read-only. Never writes through a symlink.
    Raises ``ConfigError`` for inputs :func:`check_inputs` refuses, ``OSError`` where the
    directory cannot take them."""
    check_inputs(arrays)
    dir_fd = open_dir_nofollow(directory)
    try:
        clear_dir(dir_fd)
        for name, value in arrays.items():
            frame = isinstance(value, pd.DataFrame | pd.Series)
            target = f"{name}.pkl" if frame else f"{name}.npy"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(target, flags, 0o444, dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as fh:
                if frame:
                    python_strings(value).to_pickle(fh)
                else:
                    np.save(fh, np.asarray(value), allow_pickle=False)
    finally:
        os.close(dir_fd)
