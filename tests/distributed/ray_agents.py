"""Agents and envs that the distributed tests import on the cluster's nodes (by spec/id)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

BODY = (
    "    from sklearn.dummy import DummyClassifier\n"
    "    model = DummyClassifier(strategy='prior').fit(x_train, y_train)\n"
)
SLEEP_S = 4


class SleepyConstant:
    """A deterministic agent whose code sleeps first, so that a test can kill its worker while
    the kernel runs; on a Ray worker it leaves a file named by its pid (content: the cell)."""

    name = "sleepy-constant"

    def act(self, observation: str, info: dict) -> str:
        where = os.environ.get("ETPO_TEST_PIDS")
        if where:
            Path(where, str(os.getpid())).write_text(f"{info.get('task')}|{info.get('seed')}")
        return f"    import time\n    time.sleep({SLEEP_S})\n" + BODY


class CountEnv(gym.Env):
    """Seeded episodes of random length that end by termination or by truncation, with a
    per-step info: enough to tell two vector envs' autoreset and seeding apart."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium convention

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float64)
        self.action_space = spaces.Discrete(3)
        self._t = 0
        self._length = 0
        self._draw = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._length = int(self.np_random.integers(1, 4))
        self._draw = float(self.np_random.random())
        return np.array([self._t, self._draw]), {"length": self._length}

    def step(self, action: int):
        self._t += 1
        reward = float(action) * self._draw + self._t
        ended = self._t >= self._length
        terminated = ended and self._length % 2 == 1
        truncated = ended and not terminated
        obs = np.array([self._t, self._draw])
        return obs, reward, terminated, truncated, {"t": self._t, "action": int(action)}


gym.register("Count-v0", entry_point=CountEnv)
