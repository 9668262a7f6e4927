"""The env's spaces and spec: what vector envs and learners read from them."""

from __future__ import annotations

import copy

import gymnasium as gym
import pytest
from gymnasium.vector.utils import (
    create_shared_memory,
    read_from_shared_memory,
    write_to_shared_memory,
)

import etpo_gym
from etpo_gym.envs.chat import ChatMessages
from etpo_gym.envs.datasci import CHARSET
from etpo_gym.envs.spaces import CodeText, PromptText

BODY = (
    "from sklearn.linear_model import LogisticRegression\n"
    "model = LogisticRegression(max_iter=2000).fit(x_train, y_train)\n"
)


def test_shared_memory_round_trip_reads_what_was_written_last():
    space = PromptText(max_length=64, charset=CHARSET)
    buffer = create_shared_memory(space, n=2)
    view = read_from_shared_memory(space, buffer, n=2)  # read once, as AsyncVectorEnv does
    for texts in (("first", "é ≤ 2\n\tx"), ("second, longer than before", "")):
        for i, text in enumerate(texts):
            write_to_shared_memory(space, i, text, buffer)
        assert copy.deepcopy(view) == texts
        assert isinstance(copy.deepcopy(view), tuple)


def test_chat_shared_memory_round_trip_reads_what_was_written_last():
    space = ChatMessages(max_length=64, charset=CHARSET, max_messages=3)
    buffer = create_shared_memory(space, n=2)
    view = read_from_shared_memory(space, buffer, n=2)  # read once, as AsyncVectorEnv does
    first = [{"role": "system", "content": 'é ≤ 2\n\t"x"'}, {"role": "user", "content": "a"}]
    longest = [{"role": "tool", "content": '"\\\n\t' * 16, "name": "run", "tool_call_id": "c1"}] * 3
    for chats in ((first, []), ([{"role": "assistant", "content": "b"}], longest)):
        for i, chat in enumerate(chats):
            assert space.contains(chat)
            write_to_shared_memory(space, i, chat, buffer)
        assert copy.deepcopy(view) == chats and isinstance(copy.deepcopy(view), tuple)
        assert list(view) == list(chats)
    with pytest.raises(ValueError, match="does not fit its shared-memory slot"):
        write_to_shared_memory(
            space, 0, [{"role": "tool", "content": "", "name": "n" * 9999}], buffer
        )


@pytest.mark.slow
@pytest.mark.parametrize("observation_format", ["text", "chat"])
@pytest.mark.parametrize("env_id", etpo_gym.ENV_IDS)
def test_async_observations_equal_sync_ones(env_id, observation_format):
    """Default vector arguments (shared memory): the same seeds give the same observations."""
    kwargs = {
        "task": "breast_cancer",
        "sandbox": "local",
        "num_envs": 2,
        "observation_format": observation_format,
    }
    seen = {}
    for mode in ("sync", "async"):
        envs = gym.make_vec(env_id, vectorization_mode=mode, **kwargs)
        try:
            reset_obs, _ = envs.reset(seed=[3, 4])
            step_obs, rewards, terminated, truncated, _ = envs.step(["model = 1 +", "model = nope"])
        finally:
            envs.close()
        seen[mode] = (reset_obs, step_obs, list(rewards), list(terminated), list(truncated))
    reset_obs, step_obs = seen["async"][:2]
    if observation_format == "chat":  # the opening turn, then only what is new
        assert all(isinstance(o, list) for o in reset_obs + step_obs)
        reset_obs = tuple(o[-1]["content"] for o in reset_obs)
        step_obs = tuple(o[-1]["content"] for o in step_obs)
    assert all(isinstance(o, str) for o in reset_obs + step_obs)
    assert "def build_model" in reset_obs[0] and "SyntaxError" in step_obs[0]
    assert seen["async"] == seen["sync"]


def test_action_space_contains_every_string_the_env_accepts():
    env = gym.make("DataSci-v0", task="breast_cancer", sandbox="local")
    space = env.action_space
    assert isinstance(space, CodeText) and isinstance(space, gym.spaces.Text)
    outside = "# 中文 ✂ \U0001f600\n" + BODY
    assert any(ch not in CHARSET for ch in outside)
    assert space.contains(outside) and space.contains("x" * (space.max_length + 1))
    assert not space.contains(b"bytes") and not space.contains(None)
    assert space.contains(space.sample())
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(outside)  # run as it is, not refused
    finally:
        env.close()
    assert info["status"] == "ok" and terminated and reward > 0.9


@pytest.mark.parametrize("env_id", etpo_gym.ENV_IDS)
def test_spec_max_episode_steps_is_max_steps(env_id):
    default = 20 if env_id == "DataSciNotebook-v0" else 5  # the notebook counts cells
    for kwargs, expected in (({}, default), ({"max_steps": 2}, 2)):
        env = gym.make(env_id, task="wine", sandbox="local", **kwargs)
        try:
            assert env.spec.max_episode_steps == expected
            assert env.unwrapped.spec.max_episode_steps == expected
            assert env.spec.kwargs.get("max_steps", default) == expected
        finally:
            env.close()
