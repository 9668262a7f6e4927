"""Chat-message observations, shared by ``DataSci-v0`` and ``DataSciNotebook-v0``.

With ``observation_format="chat"`` an env observes a list of messages
``[{"role": "system" | "user" | "assistant" | "tool", "content": str}]`` instead of a string:
``reset`` gives the opening turn (a system message and the task prompt), and every ``step`` gives
only what is new (the cell's output, the error, the score), never the whole prompt again. The
agent keeps the transcript: ``reset`` observation + its own ``{"role": "assistant", ...}``
message + each step's observation, in order, is the conversation a chat model continues.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import (
    batch_space,
    concatenate,
    create_empty_array,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
    write_to_shared_memory,
)

from etpo_gym.errors import ConfigError

OBSERVATION_FORMATS: tuple[str, ...] = ("text", "chat")
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
#: Keys a message may carry besides ``role`` and ``content`` (tool results name their call).
OPTIONAL_KEYS: frozenset[str] = frozenset({"name", "tool_call_id"})

Message = dict[str, str]


def check_format(value: str) -> str:
    """``value`` if it is one of :data:`OBSERVATION_FORMATS`, else a :class:`ConfigError`."""
    if value not in OBSERVATION_FORMATS:
        raise ConfigError(f"observation_format={value!r} is not one of {OBSERVATION_FORMATS}")
    return value


class ChatMessages(spaces.Space[list]):
    """A list of chat messages, each ``{"role": str, "content": str}`` (optionally ``name`` and
    ``tool_call_id``), with a role from :data:`ROLES` and content in a ``Text`` space.

    Args:
        max_length: characters of one message's content (and of ``name``/``tool_call_id``).
        charset: characters the content may hold.
        max_messages: messages in one observation.
    """

    def __init__(
        self,
        max_length: int,
        charset: frozenset[str] | str,
        max_messages: int = 8,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.content_space = spaces.Text(max_length=max_length, min_length=0, charset=charset)
        self.max_messages = int(max_messages)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> int | list[int]:
        seeds = super().seed(seed)
        self.content_space.seed(int(self.np_random.integers(2**31)))
        return seeds

    def sample(self, mask: Any = None, probability: Any = None) -> list[Message]:
        """One to three messages of random roles and contents."""
        count = int(self.np_random.integers(1, min(3, self.max_messages) + 1))
        return [
            {
                "role": ROLES[int(self.np_random.integers(len(ROLES)))],
                "content": self.content_space.sample(),
            }
            for _ in range(count)
        ]

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list | tuple) or len(x) > self.max_messages:
            return False
        for message in x:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return False
            if not self.content_space.contains(message.get("content")):
                return False
            extra = set(message) - {"role", "content"}
            if extra - OPTIONAL_KEYS:
                return False
            if any(not isinstance(message[key], str) for key in extra):
                return False
        return True

    def __repr__(self) -> str:
        return (
            f"ChatMessages(max_length={self.content_space.max_length}, "
            f"max_messages={self.max_messages})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ChatMessages)
            and self.max_messages == other.max_messages
            and self.content_space == other.content_space
        )

    def to_jsonable(self, sample_n: Sequence[list[Message]]) -> list[list[Message]]:
        return [list(sample) for sample in sample_n]

    def from_jsonable(self, sample_n: list[list[Message]]) -> list[list[Message]]:
        return [list(sample) for sample in sample_n]


# Vector envs batch observations: a batch of message lists is a tuple of lists, as Gymnasium does
# for its other variable-size spaces (Text, Sequence, Graph).
@batch_space.register(ChatMessages)
def _batch(space: ChatMessages, n: int = 1) -> spaces.Tuple:
    return spaces.Tuple(tuple(space for _ in range(n)))


@create_empty_array.register(ChatMessages)
def _empty(space: ChatMessages, n: int = 1, fn: Any = np.zeros) -> tuple[list[Message], ...]:
    return tuple([] for _ in range(n))


@concatenate.register(ChatMessages)
def _concatenate(space: ChatMessages, items: Any, out: Any) -> tuple[list[Message], ...]:
    return tuple(items)


@iterate.register(ChatMessages)
def _iterate(space: ChatMessages, items: Any) -> Any:
    return iter(items)


# Gymnasium's AsyncVectorEnv carries observations in shared memory by default. A message list
# travels there as UTF-8 JSON in a fixed slot per env: a 4-byte length, then the text. The slot
# holds every message at its content cap (JSON escapes take at most 6 bytes per character) plus
# _MESSAGE_EXTRA bytes for its role, name and tool call id.
_MESSAGE_EXTRA = 512


def _slot_bytes(space: ChatMessages) -> int:
    return 4 + space.max_messages * (6 * space.content_space.max_length + _MESSAGE_EXTRA)


class SharedChats(Sequence[list[Message]]):
    """The message lists in a shared buffer of :func:`_slot_bytes` slots, decoded on every
    access (AsyncVectorEnv reads the buffer once, when it is built); ``copy.deepcopy`` (what it
    returns with ``copy=True``) gives a plain tuple of lists."""

    def __init__(self, space: ChatMessages, shared_memory: Any, n: int) -> None:
        self._slot = _slot_bytes(space)
        self._bytes = np.frombuffer(shared_memory.get_obj(), dtype=np.uint8).reshape(
            (n, self._slot)
        )

    def __len__(self) -> int:
        return len(self._bytes)

    def __getitem__(self, index: int) -> list[Message]:  # type: ignore[override]
        row = self._bytes[index]
        size = int.from_bytes(row[:4].tobytes(), "little")
        return json.loads(row[4 : 4 + size].tobytes()) if size else []

    def __iter__(self) -> Iterator[list[Message]]:
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[list[Message], ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return f"SharedChats({tuple(self)!r})"


@create_shared_memory.register(ChatMessages)
def _create_shared(space: ChatMessages, n: int = 1, ctx: ModuleType = multiprocessing) -> Any:
    return ctx.Array("B", n * _slot_bytes(space))


@read_from_shared_memory.register(ChatMessages)
def _read_shared(space: ChatMessages, shared_memory: Any, n: int = 1) -> SharedChats:
    return SharedChats(space, shared_memory, n)


@write_to_shared_memory.register(ChatMessages)
def _write_shared(space: ChatMessages, index: int, value: Any, shared_memory: Any) -> None:
    data = json.dumps(list(value), ensure_ascii=False).encode()
    slot = _slot_bytes(space)
    if 4 + len(data) > slot:
        raise ValueError(
            f"a chat observation of {len(data)} bytes of JSON does not fit its shared-memory slot "
            f"of {slot - 4} (a name or tool_call_id over {_MESSAGE_EXTRA // 6} characters?)"
        )
    row = np.frombuffer(shared_memory.get_obj(), dtype=np.uint8)[index * slot : (index + 1) * slot]
    row[:4] = np.frombuffer(len(data).to_bytes(4, "little"), dtype=np.uint8)
    row[4 : 4 + len(data)] = np.frombuffer(data, dtype=np.uint8)


SYSTEM_PROMPT = (
    "You are an expert data scientist. You write Python code that runs in a Jupyter kernel; "
    "reply with code only."
)


def opening(prompt: str, system: str = SYSTEM_PROMPT) -> list[Message]:
    """The first observation in chat form: a system message and the task prompt."""
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def feedback(text: str) -> list[Message]:
    """A step's observation in chat form: only what is new, as one user message."""
    return [{"role": "user", "content": text}]


def message_text(value: Any) -> str:
    """The text of a completion: a string, a message, or a list of messages (the last
    assistant message's content), as chat trainers hand them over."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        content = value.get("content", "")
        return content if isinstance(content, str) else str(content)
    if isinstance(value, list | tuple):
        for message in reversed(value):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                return message_text(message)
        return message_text(value[-1]) if value else ""
    return str(value)
