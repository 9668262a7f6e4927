"""The ``Text`` spaces of the DataSci envs, made to work where Gymnasium's ``Text`` does not.

:class:`PromptText` (observations): Gymnasium's ``AsyncVectorEnv`` with ``shared_memory=True``
(its default) reads a batch of ``Text`` observations out of the shared buffer once, when it is
built, into immutable strings, so every later ``reset`` and ``step`` returns that first read (all
padding) instead of the workers' observations. For this space the read gives a live view of the
buffer instead, which the vector env's copy of each batch turns into a tuple of strings: async
observations equal sync ones.

:class:`CodeText` (actions): the env runs any string (garbage is an error observation, never a
crash), so ``contains`` accepts any string, whatever its characters or length; ``sample`` still
draws from the charset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory


class PromptText(spaces.Text):
    """A ``Text`` observation space that Gymnasium's shared-memory async vector env can carry."""


class CodeText(spaces.Text):
    """A ``Text`` action space whose ``contains`` accepts every string, as the env does."""

    def contains(self, x: Any) -> bool:
        """Any ``str`` is a valid action: the env runs it and reports what went wrong."""
        return isinstance(x, str)


class SharedTexts(Sequence[str]):
    """The strings in a shared ``(n, max_length)`` int32 buffer of character indices, decoded on
    every access; ``copy.deepcopy`` (what ``AsyncVectorEnv`` returns with ``copy=True``) gives a
    plain tuple of strings."""

    def __init__(self, space: spaces.Text, shared_memory: Any, n: int) -> None:
        self._codes = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(
            (n, space.max_length)
        )
        # index → code point; index len(charset) is the padding that ends each string
        self._points = np.array([ord(ch) for ch in space.character_list], dtype="<u4")

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        row = self._codes[index]
        row = row[row < len(self._points)]
        return self._points[row].tobytes().decode("utf-32-le")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedTexts({tuple(self)!r})"


@read_from_shared_memory.register(PromptText)
def _read_prompt_text(space: PromptText, shared_memory: Any, n: int = 1) -> SharedTexts:
    return SharedTexts(space, shared_memory, n)
