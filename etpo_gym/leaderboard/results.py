"""A benchmark directory's files: ``results.jsonl`` (one line per finished cell), ``run.json``
(the run's settings) and JSON written for other programs (``null``, never ``NaN``).

The runner appends to ``results.jsonl`` from the parent process only, one line in one write,
flushed and fsynced: a run killed at any point leaves at most a torn last line, which
:func:`read_results` drops.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError


def cell_key(task: str, agent: str, seed: int) -> str:
    """The identity of one cell of the board: ``task|agent|seed``."""
    return f"{task}|{agent}|{seed}"


def read_results(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of ``results.jsonl``; a torn last line (a kill mid-write) is dropped (and cut off
    the file when ``repair``)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good_end += len(line)
    if repair and good_end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return records


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, in one write, flushed to disk."""
    line = (dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_run(out: Path) -> dict[str, Any]:
    """``run.json`` of a benchmark directory (its settings, start time, versions)."""
    path = Path(out) / "run.json"
    if not path.is_file():
        raise ConfigError(f"{out} is not a benchmark directory (no run.json)")
    return json.loads(path.read_text())


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON: non-finite floats become ``null``, other non-JSON values their ``str``."""
    return json.dumps(json_safe(value), allow_nan=False, default=str, **kwargs)
