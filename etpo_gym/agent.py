"""The agent contract: anything that turns an observation into code.

An agent is any object with ``act(observation, info) -> str``, or a plain callable
``f(observation, info) -> str``. Two optional hooks::

    reset(*, task: str, seed: int) -> None              # episode start
    observe(observation, reward, terminated, truncated, info) -> None   # after each step

and an optional ``name``. Nothing to subclass: :func:`run_episode` drives any of them through a
Gymnasium env, and the leaderboard runner uses it for every cell.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from etpo_gym.errors import ConfigError


@runtime_checkable
class Agent(Protocol):
    """What the env needs from an agent: code for an observation."""

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


def agent_name(agent: Any) -> str:
    """``agent.name``, else the class or function name."""
    name = getattr(agent, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(agent, "__name__", type(agent).__name__)


def _act(agent: Any, observation: str, info: dict[str, Any]) -> str:
    if hasattr(agent, "act"):
        return agent.act(observation, info)
    if callable(agent):
        return agent(observation, info)
    raise ConfigError(
        f"{agent!r} is not an agent: it needs act(observation, info) -> str or must be callable"
    )


@dataclass
class EpisodeResult:
    """What one episode did (rewards per step, statuses, outcome)."""

    rewards: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    success: bool = False
    infra_errors: int = 0
    notebook: str | None = None
    wall_s: float = 0.0

    @property
    def final_reward(self) -> float | None:
        return self.rewards[-1] if self.rewards else None

    @property
    def best_reward(self) -> float | None:
        return max(self.rewards) if self.rewards else None

    @property
    def steps(self) -> int:
        return len(self.rewards)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            final_reward=self.final_reward,
            best_reward=self.best_reward,
            steps=self.steps,
            steps_to_success=self.steps if self.success else None,
            error_counts=dict(Counter(s for s in self.statuses if s != "ok")),
        )
        return out


def run_episode(
    env: gym.Env, agent: Any, seed: int | None = None, task: str | None = None
) -> EpisodeResult:
    """Run one episode of ``agent`` in ``env`` (reset, then step until it ends)."""
    started = time.perf_counter()
    observation, info = env.reset(seed=seed)
    if hasattr(agent, "reset"):
        agent.reset(task=task or info.get("task", ""), seed=seed if seed is not None else 0)
    result = EpisodeResult()
    done = False
    while not done:
        code = _act(agent, observation, info)
        observation, reward, terminated, truncated, info = env.step(code)
        result.rewards.append(float(reward))
        result.statuses.append(str(info.get("status", "")))
        result.scores.append(info.get("score"))
        result.infra_errors += bool(info.get("infra_error"))
        result.success = result.success or (terminated and info.get("status") == "ok")
        if hasattr(agent, "observe"):
            agent.observe(observation, reward, terminated, truncated, info)
        done = terminated or truncated
    result.notebook = info.get("notebook")
    result.wall_s = time.perf_counter() - started
    return result
