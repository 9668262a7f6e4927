"""Env fixtures: ``open_env`` makes envs that are closed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import pytest


@pytest.fixture
def open_env() -> Iterator[Callable[..., gym.Env]]:
    """``open_env(env_id, **kwargs)``: ``gym.make``, closed when the test ends."""
    envs: list[gym.Env] = []

    def make(env_id: str, **kwargs: Any) -> gym.Env:
        env = gym.make(env_id, **kwargs)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
