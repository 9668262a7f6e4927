"""Chat-message observations, shared by ``DataSci-v0`` and ``DataSciNotebook-v0``.

With ``observation_format="chat"`` an env observes a list of messages
``[{"role": "system" | "user" | "assistant" | "tool", "content": str}]`` instead of a string:
``reset`` gives the opening turn (a system message and the task prompt), and every ``step`` gives
only what is new (the cell's output, the error, the score), never the whole prompt again. The
agent keeps the transcript: ``reset`` observation + its own ``{"role": "assistant", ...}``
message + each step's observation, in order, is the conversation a chat model continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

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
