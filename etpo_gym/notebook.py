"""Episodes recorded as Jupyter notebooks (``nbformat`` v4).

The prompt is a markdown cell, each action a code cell with the outputs the kernel produced, and
each reward a markdown cell. Files validate with ``nbformat.validate`` and open in Jupyter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4


def _quote(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.splitlines())


class EpisodeRecorder:
    """Builds one notebook per episode and writes it atomically to ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._nb: nbformat.NotebookNode | None = None
        self._name = ""
        self.last_path: Path | None = None

    def begin(self, name: str, prompt: str, metadata: dict[str, Any]) -> None:
        self._name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        nb = v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nb.metadata["etpo_gym"] = metadata
        nb.cells.append(v4.new_markdown_cell("## Prompt\n\n" + _quote(prompt)))
        self._nb = nb

    def add_step(self, step: int, code: str, outputs: list[dict[str, Any]], summary: str) -> None:
        if self._nb is None:
            return
        cell = v4.new_code_cell(source=code, execution_count=step)
        cell.outputs = [nbformat.from_dict(out) for out in outputs]
        self._nb.cells.append(cell)
        self._nb.cells.append(v4.new_markdown_cell(summary))

    def finish(self) -> Path | None:
        """Validate and write the notebook; returns its path (``None`` if nothing was begun)."""
        nb, self._nb = self._nb, None
        if nb is None or len(nb.cells) < 2:
            return None
        nbformat.validate(nb)
        path = self.directory / f"{self._name}.ipynb"
        tmp = path.with_suffix(".ipynb.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            nbformat.write(nb, fh)
        os.replace(tmp, path)
        self.last_path = path
        return path
