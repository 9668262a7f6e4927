"""Episodes recorded as Jupyter notebooks (``nbformat`` v4).

The prompt is a markdown cell, each action a code cell with the outputs the kernel produced, and
each reward a markdown cell. Files validate with ``nbformat.validate`` and open in Jupyter.
``DataSciNotebook-v0`` also saves the episode's data files (training rows, their labels and the
evaluation rows, never the evaluation labels) in ``NAME_data/`` beside ``NAME.ipynb``, and its
first code cell loads them from there, so the notebook re-runs top to bottom.
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

    @staticmethod
    def file_stem(name: str) -> str:
        """The file name (without ``.ipynb``) an episode called ``name`` is written under."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)

    def begin(self, name: str, prompt: str, metadata: dict[str, Any]) -> None:
        self._name = self.file_stem(name)
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

    def add_code(
        self,
        source: str,
        outputs: list[dict[str, Any]],
        execution_count: int | None = None,
        raises: bool = False,
    ) -> None:
        """A code cell; ``raises`` tags it ``raises-exception`` so that a top-to-bottom run
        (nbclient, papermill) goes on past the error it shows."""
        if self._nb is None:
            return
        cell = v4.new_code_cell(source=source, execution_count=execution_count)
        cell.outputs = [nbformat.from_dict(out) for out in outputs]
        if raises:
            cell.metadata["tags"] = ["raises-exception"]
        self._nb.cells.append(cell)

    def add_markdown(self, text: str) -> None:
        if self._nb is not None:
            self._nb.cells.append(v4.new_markdown_cell(text))

    def save_data(self, folder: str, arrays: dict[str, Any]) -> Path:
        """Write ``arrays`` into ``folder`` beside the notebooks, as the sandbox writes its data
        directory (``NAME.npy``, or ``NAME.pkl`` for DataFrames); returns the folder."""
        from etpo_gym.sandbox.files import save_inputs

        path = (self.directory / folder).absolute()
        path.mkdir(exist_ok=True)
        save_inputs(path, arrays)
        return path

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
