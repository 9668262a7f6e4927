"""Chat-message observations and tool calls, on both envs (real local kernels)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.envs.chat import ChatMessages, message_text
from etpo_gym.errors import ConfigError
from etpo_gym.tools import RUN_CELL, SUBMIT, ToolCallEnv, parse_tool_call

LOGREG_BODY = """\
from sklearn.linear_model import LogisticRegression
model = LogisticRegression(max_iter=5000).fit(x_train, y_train)
"""


@pytest.fixture
def make_env(open_env):
    def factory(env_id, **kwargs):
        return open_env(env_id, **{"sandbox": "local", "timeout": 30.0, **kwargs})

    return factory


def test_datasci_chat_feedback_is_incremental(make_env):
    text_env = make_env("DataSci-v0", task="wine")
    prompt, _ = text_env.reset(seed=2)
    env = make_env("DataSci-v0", task="wine", observation_format="chat")
    obs, _ = env.reset(seed=2)
    assert [m["role"] for m in obs] == ["system", "user"] and obs[1]["content"] == prompt
    assert env.observation_space.contains(obs)
    obs, reward, terminated, _, _ = env.step("raise ValueError('boom 17')")
    assert reward == -1.0 and not terminated and len(obs) == 1 and obs[0]["role"] == "user"
    assert "ValueError: boom 17" in obs[0]["content"] and "Task:" not in obs[0]["content"]
    assert len(obs[0]["content"]) < 1000 and env.observation_space.contains(obs)
    obs, reward, terminated, _, _info = env.step(LOGREG_BODY)
    assert terminated and obs[0]["content"].startswith("Scored: roc_auc") and reward > 0.9


def test_notebook_chat_and_tool_calls(make_env):
    env = ToolCallEnv(make_env("DataSciNotebook-v0", task="wine", observation_format="chat"))
    obs, info = env.reset(seed=0)
    assert info["tools"] == [RUN_CELL, SUBMIT] and [m["role"] for m in obs] == ["system", "user"]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "run_cell", "arguments": '{"code": "x_train.shape"}'},
    }
    obs, reward, *_ = env.step(call)  # OpenAI form: JSON-string arguments, with an id
    assert obs == [
        {"role": "tool", "content": "(125, 13)\n", "name": "run_cell", "tool_call_id": "call_1"}
    ]
    assert env.observation_space.contains(obs) and reward == 0.0
    obs, *_ = env.step({"name": "run_cell", "arguments": {"code": "marker = 5"}})  # HF form
    assert obs[0]["content"] == "(no output)"
    for bad in ({"name": "rm", "arguments": {}}, {"name": "run_cell", "arguments": "{"}):
        obs, reward, terminated, truncated, info = env.step(bad)
        assert reward == -1.0 and info["error"].startswith("InvalidToolCall")
        assert obs[0]["role"] == "tool" and "No code was run" in obs[0]["content"]
        assert not (terminated or truncated)
    obs, *_ = env.step({"name": "run_cell", "arguments": {"code": "marker"}})
    assert obs[0]["content"] == "5\n"  # the invalid calls ran nothing, the state is intact
    obs, reward, terminated, _, info = env.step(
        {"name": "submit", "arguments": {"code": LOGREG_BODY}}
    )
    assert terminated and info["kind"] == "submission" and reward > 0.9, info["error"]


def test_invalid_calls_in_a_row_truncate(make_env):
    env = ToolCallEnv(make_env("DataSci-v0", task="wine"), max_invalid_calls=2)
    _, info = env.reset(seed=0)
    assert info["tools"] == [SUBMIT]  # no cells in the one-shot env
    obs, reward, _, truncated, info = env.step({"name": "run_cell", "arguments": {"code": "1"}})
    assert isinstance(obs, str) and "unknown tool 'run_cell'" in obs and not truncated
    _, _, _, truncated, _ = env.step("not json")
    assert truncated
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step('{"name": "submit", "arguments": {"code": "model = 1"}}')
    assert reward == -1.0 and not terminated  # a real (failed) step: the env's error reward


def test_parse_tool_call_forms_and_errors():
    names = ["run_cell", "submit"]
    assert parse_tool_call(
        [{"function": {"name": "submit", "arguments": '{"code": "x"}'}}], names
    ) == ("submit", "x", None)
    with pytest.raises(ValueError, match="exactly one tool call"):
        parse_tool_call([], names)
    with pytest.raises(ValueError, match="takes one argument, code"):
        parse_tool_call({"name": "submit", "arguments": {"source": "x"}}, names)
    with pytest.raises(ConfigError, match="max_invalid_calls=0"):
        ToolCallEnv(gym.make("DataSci-v0", sandbox="local"), max_invalid_calls=0)


def test_chat_space_and_message_text():
    space = ChatMessages(100, "abc ", max_messages=2, seed=0)
    for _ in range(20):
        assert space.contains(space.sample())
    assert not space.contains([{"role": "robot", "content": "a"}])
    assert not space.contains([{"role": "user", "content": "xyz"}])  # outside the charset
    assert not space.contains([{"role": "user", "content": "a", "extra": "b"}])
    assert not space.contains([{"role": "user", "content": "a"}] * 3)
    assert space.contains([{"role": "tool", "content": "a", "name": "abc"}])
    assert (
        message_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "c"}])
        == "c"
    )
    assert message_text("code") == "code"


def test_check_env_on_chat_and_tool_variants():
    variants = [
        ("DataSci-v0", {"observation_format": "chat"}, False),
        ("DataSciNotebook-v0", {"observation_format": "chat"}, True),
    ]
    for env_id, kwargs, tools in variants:
        env = gym.make(env_id, task="wine", sandbox="local", timeout=20.0, **kwargs)
        try:
            check_env(ToolCallEnv(env) if tools else env.unwrapped)
        finally:
            env.close()


def test_sync_vector_env_carries_chat_messages():
    envs = gym.make_vec(
        "DataSci-v0", num_envs=2, vectorization_mode="sync", task="wine", sandbox="local",
        observation_format="chat",
    )  # fmt: skip
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert len(obs) == 2 and obs[0][1]["role"] == "user"
        obs, _rewards, *_ = envs.step([LOGREG_BODY, "raise KeyError('k')"])
        assert obs[1][0]["role"] == "user" and "KeyError" in obs[1][0]["content"]
    finally:
        envs.close()
