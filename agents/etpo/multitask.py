"""``EtpoMultiTask-v0``: DataSci episodes over several tasks, one task drawn per episode.

A vector env passes the same keywords to every copy, so training on a set of tasks needs one env
that holds them all: each ``reset`` draws a task uniformly with the env's seeded RNG and starts an
episode of it; ``step`` goes to that task's ``DataSci-v0``. The observation names the task (every
DataSci prompt does), so one policy can learn what suits each. Each task's env keeps its own seed
chain, so its sandbox can pre-start the kernel of its next episode as a single-task env does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym

import etpo_gym  # noqa: F401 - registers DataSci-v0
from etpo_gym.errors import ConfigError

ENV_ID = "etpo_agents.etpo.multitask:EtpoMultiTask-v0"


class MultiTaskEnv(gym.Env[str, str]):
    """Episodes of ``DataSci-v0`` over ``tasks``, the task drawn at each ``reset``.

    Args:
        tasks: task names (at least one); duplicates weigh a task more.
        env_id: the single-task env each task runs in.
        **env_kwargs: ``gym.make(env_id, ...)`` keywords shared by every task.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, tasks: Sequence[str], env_id: str = "DataSci-v0", **env_kwargs: Any) -> None:
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        if not tasks:
            raise ConfigError("tasks=[] is empty; give at least one task name")
        self.tasks = list(tasks)
        self._envs = {t: gym.make(env_id, task=t, **env_kwargs) for t in dict.fromkeys(tasks)}
        first = self._envs[self.tasks[0]]
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self._current: gym.Env | None = None
        self._seeded: set[str] = set()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seeded.clear()  # every task's seed chain restarts from this seed
        task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        env = self._envs[task]
        task_seed = None
        if task not in self._seeded:
            task_seed = int(self.np_random.integers(0, 2**31 - 1))
            self._seeded.add(task)
        self._current = env
        return env.reset(seed=task_seed, options=options)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._current is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._current.step(action)

    def close(self) -> None:
        envs, self._envs = self._envs, {}
        for env in envs.values():
            env.close()
        self._current = None


gym.register("EtpoMultiTask-v0", entry_point=MultiTaskEnv)
