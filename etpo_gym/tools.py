"""Tool calling: the tool schemas of the envs and a wrapper that takes a tool call as the action.

Two tools, as JSON schemas in the OpenAI / Hugging Face function format (what
``tokenizer.apply_chat_template(messages, tools=...)`` and chat-completion APIs take):

* ``run_cell(code)`` — run a code cell in the notebook's kernel (``DataSciNotebook-v0`` only);
* ``submit(code)`` — submit ``def build_model(x_train, y_train)`` (or its body) for scoring.

:class:`ToolCallEnv` wraps either env so that an action is one tool call::

    env = ToolCallEnv(gym.make("DataSciNotebook-v0", observation_format="chat"))
    obs, info = env.reset(seed=0)        # env.tools: the schemas to give the model
    obs, reward, terminated, truncated, info = env.step(
        {"name": "run_cell", "arguments": '{"code": "print(x_train.shape)"}'}
    )  # obs: [{"role": "tool", "name": "run_cell", "content": "(398, 30)\\n"}]

A call is ``{"name": ..., "arguments": ...}`` with ``arguments`` a JSON string (OpenAI) or a dict
(Hugging Face), or an OpenAI ``tool_calls`` item ``{"id": ..., "type": "function", "function":
{...}}``, or a JSON string of any of them. A call that is not one of these (an unknown tool,
unreadable arguments, no ``code``) is the agent's error: ``error_reward``, an observation saying
what was wrong and what is accepted, no code run; ``max_invalid_calls`` of them in a row truncate
the episode.
"""

from __future__ import annotations

import json
import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from etpo_gym.envs import chat
from etpo_gym.envs.datasci import CHARSET
from etpo_gym.envs.spaces import CodeText
from etpo_gym.errors import ConfigError
from etpo_gym.prompts import SUBMIT_MARKER

RUN_CELL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "run_cell",
        "description": (
            "Run one Python code cell in the notebook's Jupyter kernel and return what it shows: "
            "printed text, the value of the last expression, errors. Variables persist between "
            "cells; x_train, y_train and x_eval are loaded."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "the cell's Python code"}},
            "required": ["code"],
        },
    },
}

SUBMIT: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "submit",
        "description": (
            "Submit a model: Python code defining def build_model(x_train, y_train) that returns "
            "a fitted model (or the function's body, which assigns model). It is fitted on the "
            "training rows and scored on the hidden labels of the evaluation rows; a scored "
            "submission ends the episode."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "the build_model function or its body"}
            },
            "required": ["code"],
        },
    },
}

_NAME_CHARS = string.ascii_letters + string.digits + "_-."


def tool_schemas(env: gym.Env) -> list[dict[str, Any]]:
    """The tools an env takes: ``[RUN_CELL, SUBMIT]`` for ``DataSciNotebook-v0``, ``[SUBMIT]``
    for the one-shot ``DataSci-v0`` family."""
    from etpo_gym.envs.datasci_notebook import DataSciNotebookEnv

    return [RUN_CELL, SUBMIT] if isinstance(env.unwrapped, DataSciNotebookEnv) else [SUBMIT]


class InvalidToolCall(ValueError):
    """A tool call the wrapper cannot run (reported to the agent, never raised to the caller)."""


def parse_tool_call(call: Any, names: list[str]) -> tuple[str, str, str | None]:
    """``(name, code, call_id)`` of a tool call in any accepted form; raises
    :class:`InvalidToolCall` with a message for the agent."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError:
            raise InvalidToolCall("the tool call is not JSON") from None
    if isinstance(call, list | tuple):
        if len(call) != 1:
            raise InvalidToolCall(f"make exactly one tool call per turn; got {len(call)}")
        call = call[0]
    if not isinstance(call, dict):
        raise InvalidToolCall(f"a tool call is an object with name and arguments; got {call!r:.80}")
    call_id = call.get("id") if isinstance(call.get("id"), str) else None
    if isinstance(call.get("function"), dict):
        call = call["function"]
    name, arguments = call.get("name"), call.get("arguments", {})
    if name not in names:
        raise InvalidToolCall(f"unknown tool {name!r:.60}; the tools are {', '.join(names)}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidToolCall(f"the arguments of {name} are not valid JSON ({exc})") from None
    if not isinstance(arguments, dict) or not isinstance(arguments.get("code"), str):
        raise InvalidToolCall(f'{name} takes one argument, code (a string): {{"code": "..."}}')
    return name, arguments["code"], call_id


class ToolCallEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """An env whose action is one tool call (see the module docstring).

    Observations: those of the wrapped env; in chat form (``observation_format="chat"``) a
    step's message has role ``"tool"``, the tool's ``name`` and, when the call had one, its
    ``tool_call_id``.

    Args:
        env: a ``DataSci-v0`` family or ``DataSciNotebook-v0`` env.
        max_invalid_calls: unusable calls in a row that truncate the episode.
    """

    def __init__(self, env: gym.Env, max_invalid_calls: int = 3) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, max_invalid_calls=max_invalid_calls)
        gym.Wrapper.__init__(self, env)
        if not isinstance(max_invalid_calls, int) or max_invalid_calls < 1:
            raise ConfigError(f"max_invalid_calls={max_invalid_calls!r} must be an integer >= 1")
        self.max_invalid_calls = max_invalid_calls
        self.tools = tool_schemas(env)
        self._names = [tool["function"]["name"] for tool in self.tools]
        inner = env.action_space
        length = inner.max_length if isinstance(inner, spaces.Text) else 16384
        self.action_space = spaces.Dict(
            {
                "name": spaces.Text(max_length=64, min_length=1, charset=_NAME_CHARS),
                # any string: an unusable one is reported to the agent (see the module docstring)
                "arguments": CodeText(max_length=length + 64, min_length=0, charset=CHARSET),
            }
        )
        self._invalid = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._invalid = 0
        observation, info = self.env.reset(**kwargs)
        info["tools"] = self.tools
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        try:
            name, code, call_id = parse_tool_call(action, self._names)
        except InvalidToolCall as exc:
            return self._invalid_call(str(exc))
        self._invalid = 0
        inner_action = f"{SUBMIT_MARKER}\n{code}" if self._submits_by_marker(name) else code
        observation, reward, terminated, truncated, info = self.env.step(inner_action)
        return self._as_tool(observation, name, call_id), reward, terminated, truncated, info

    def _submits_by_marker(self, name: str) -> bool:
        return name == "submit" and "run_cell" in self._names  # the notebook's submission cell

    def _invalid_call(self, message: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._invalid += 1
        truncated = self._invalid >= self.max_invalid_calls
        text = f"InvalidToolCall: {message}. No code was run."
        if truncated:
            text += f" {self._invalid} unusable calls in a row: the episode is over."
        error_reward = float(getattr(self.env.unwrapped, "error_reward", -1.0))
        info = {
            "status": "error",
            "error": f"InvalidToolCall: {message}",
            "score": None,
            "infra_error": False,
            "state_lost": False,
            "kind": "tool_call",
        }
        fmt = getattr(self.env.unwrapped, "observation_format", "text")
        observation: Any = chat.feedback(text) if fmt == "chat" else text
        if fmt == "chat":
            observation[0]["role"] = "tool"
        return observation, error_reward, False, truncated, info

    @staticmethod
    def _as_tool(observation: Any, name: str, call_id: str | None) -> Any:
        if isinstance(observation, str):
            return observation
        messages = []
        for message in observation:
            message = {**message, "role": "tool", "name": name}
            if call_id is not None:
                message["tool_call_id"] = call_id
            messages.append(message)
        return messages
