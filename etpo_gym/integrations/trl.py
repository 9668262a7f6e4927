"""TRL (``GRPOTrainer``) on etpo-gym: a reward function, a multi-step rollout, tool environments.

Needs the ``trl`` extra (``pip install "etpo-gym[trl]"``). This module uses neither trl nor torch
(the env library never imports torch): the multi-step rollout, which generates with the model,
is :class:`etpo_agents.rollout.Rollout` in the agents package.

Three ways in, from simple to agentic::

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    import etpo_gym
    from etpo_gym.integrations.trl import EnvReward, environment_factory
    from etpo_agents.rollout import Rollout

    rows = etpo_gym.prompt_dataset(["skill_dates", "wine"], seeds=range(8))  # prompt, task, seed
    dataset = Dataset.from_list(rows)

    # 1. one-step rewards: each completion scored by score_batch on a warm pool
    GRPOTrainer(model, reward_funcs=EnvReward(workers=2), train_dataset=dataset, ...)

    # 2. multi-step episodes: the model answers, the env's feedback is appended (env_mask = 0
    #    on those tokens), the model answers again, ... ; the episode's return is the reward
    rollout = Rollout(rows, max_turns=3)
    GRPOTrainer(model, rollout_func=rollout, reward_funcs=rollout.reward, ...)

    # 3. tool calling (a model whose chat template supports tools): run_cell / submit
    GRPOTrainer(model, environment_factory=environment_factory("DataSciNotebook-v0"), ...)

Infra errors give ``None`` (TRL: no reward for that sample), never a score.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from etpo_gym.batch import ScoringPool
from etpo_gym.envs.chat import message_text
from etpo_gym.errors import ConfigError


class EnvReward:
    """A ``GRPOTrainer`` reward function: each completion is one action, scored as ``env.step``
    scores it (:class:`~etpo_gym.batch.ScoringPool`), on the row's ``task`` and ``seed``
    columns (those of :func:`etpo_gym.prompt_dataset`).

    Args:
        pool: a pool to score on (not closed by this object); else one is made from the rest.
        workers, env_id, sandbox, env_kwargs: the pool's settings.
    """

    __name__ = "etpo_gym_env_reward"  # TRL names reward functions by __name__ in its logs

    def __init__(
        self,
        pool: ScoringPool | None = None,
        *,
        workers: int = 2,
        env_id: str = "DataSci-v0",
        sandbox: str = "auto",
        **env_kwargs: Any,
    ) -> None:
        self._own = pool is None
        self.pool = pool or ScoringPool(workers, env_id=env_id, sandbox=sandbox, **env_kwargs)
        self.last: list[dict[str, Any]] = []

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        task: Sequence[str] | None = None,
        seed: Sequence[int] | None = None,
        **_: Any,
    ) -> list[float | None]:
        if task is None or seed is None:
            raise ConfigError(
                "EnvReward needs the dataset's task and seed columns: build the dataset with "
                "etpo_gym.prompt_dataset(...)"
            )
        codes = [message_text(completion) for completion in completions]
        self.last = self.pool.score(codes, list(task), [int(s) for s in seed])
        return [None if r.get("infra_error") else float(r["reward"]) for r in self.last]

    def close(self) -> None:
        if self._own:
            self.pool.close()


def prompt_key(prompt: Any) -> str:
    """A dataset prompt as a lookup key: the text itself, or chat messages as sorted JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


class SubmitEnvironment:
    """An ``environment_factory`` environment for the one-shot ``DataSci-v0`` family: one tool,
    :meth:`submit`. ``reset(**row)`` takes the dataset row's ``task`` and ``seed``;
    :meth:`get_reward` is the episode's reward (the metric of a scored submission, else
    ``error_reward``)."""

    def __init__(self, env_id: str = "DataSci-v0", sandbox: str = "auto", **env_kwargs: Any):
        import gymnasium as gym

        import etpo_gym  # noqa: F401 - registers the ids
        from etpo_gym.tools import ToolCallEnv

        env_kwargs.setdefault("observation_format", "chat")
        self._env = ToolCallEnv(gym.make(env_id, sandbox=sandbox, **env_kwargs))
        self._error_reward = float(self._env.unwrapped.error_reward)
        self.reward = self._error_reward
        self.done = True

    def reset(self, **kwargs: Any) -> None:
        task, seed = kwargs.get("task"), kwargs.get("seed")
        options = {"task": task} if task is not None else None
        self._env.reset(seed=None if seed is None else int(seed), options=options)
        self.reward = self._error_reward
        self.done = False

    def submit(self, code: str) -> str:
        """Submit a model for scoring on the hidden labels; a scored submission ends the task.

        Args:
            code: Python code defining def build_model(x_train, y_train) that returns a fitted
                model, or the body of that function (which assigns model).

        Returns:
            The score, or what went wrong.
        """
        return self._call("submit", code)

    def get_reward(self) -> float:
        return self.reward

    # Dunder and private names only: TRL offers every other public method as a tool.
    def __enter__(self) -> SubmitEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        self._env.close()

    def _call(self, name: str, code: str) -> str:
        if self.done:
            return "The episode is over."
        observation, reward, terminated, truncated, _ = self._env.step(
            {"name": name, "arguments": {"code": code}}
        )
        self.done = bool(terminated or truncated)
        if terminated:
            self.reward = float(reward)
        return message_text(observation)


class NotebookEnvironment(SubmitEnvironment):
    """An ``environment_factory`` environment for ``DataSciNotebook-v0``: the tools
    :meth:`run_cell` and :meth:`submit`."""

    def __init__(
        self, env_id: str = "DataSciNotebook-v0", sandbox: str = "auto", **env_kwargs: Any
    ):
        super().__init__(env_id, sandbox=sandbox, **env_kwargs)

    def run_cell(self, code: str) -> str:
        """Run one Python code cell in the notebook's Jupyter kernel; x_train, y_train and
        x_eval are loaded, and variables persist between cells.

        Args:
            code: the cell's Python code.

        Returns:
            What the cell shows: printed text, the value of the last expression, errors.
        """
        return self._call("run_cell", code)


def environment_factory(
    env_id: str = "DataSciNotebook-v0", *, sandbox: str = "auto", **env_kwargs: Any
) -> Callable[[], SubmitEnvironment]:
    """What ``GRPOTrainer(environment_factory=...)`` takes: a zero-argument callable making
    :class:`NotebookEnvironment` (run_cell, submit) for ``DataSciNotebook-v0``, or
    :class:`SubmitEnvironment` (submit) for the ``DataSci-v0`` family. The model needs a chat
    template that supports tools."""
    import gymnasium as gym

    import etpo_gym  # noqa: F401 - registers the ids
    from etpo_gym.envs.datasci_notebook import DataSciNotebookEnv

    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    notebook = entry.endswith(":" + DataSciNotebookEnv.__name__)
    cls = NotebookEnvironment if notebook else SubmitEnvironment
    return functools.partial(cls, env_id, sandbox=sandbox, **env_kwargs)
