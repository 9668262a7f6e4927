"""What trainers need besides an env loop: prompts without kernels, and rewards in batches.

:func:`prompt_dataset` gives the first observation of ``reset(seed)`` for tasks × seeds, computed
by the env's own code without starting a kernel, as rows that ``datasets.Dataset.from_list``
takes. :func:`score_batch` (and :class:`ScoringPool`, which keeps its sandboxes warm between
calls) scores one-step actions in parallel: each worker is a real env that runs
``reset(seed, options={"task": ...})`` and ``step(code)``, so the results are those of
``env.step``, by construction.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from etpo_gym.errors import ConfigError
from etpo_gym.tasks import get_task
from etpo_gym.tasks.base import Task

#: Most workers a pool accepts (each is a sandbox with its own kernels).
MAX_WORKERS = 32


def _task_names(tasks: str | Task | Sequence[str | Task]) -> list[str | Task]:
    if isinstance(tasks, str | Task):
        return [tasks]
    return list(tasks)


def _seed_list(seeds: int | Sequence[int], what: str = "seeds") -> list[int]:
    values = [seeds] if isinstance(seeds, int) else list(seeds)
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{what}: {value!r} is not a non-negative integer")
    return values


def prompt_dataset(
    tasks: str | Task | Sequence[str | Task],
    seeds: int | Sequence[int],
    env_id: str = "DataSci-v0",
    **env_kwargs: Any,
) -> list[dict[str, Any]]:
    """The first observation that ``reset(seed=s, options={"task": t})`` gives, for every task
    ``t`` and seed ``s``, without starting a kernel.

    Args:
        tasks: task names (or :class:`~etpo_gym.tasks.base.Task` objects, or CSV paths with
            ``target=`` in ``env_kwargs``).
        seeds: the seeds (an int is one seed).
        env_id: a registered id (its variant's settings apply, e.g. ``DataSciRich-v0``'s
            prompt style).
        env_kwargs: the settings you make the env with (``observation_format="chat"`` gives
            message lists). ``sandbox`` defaults to ``"local"``: no kernel is started either way.

    Returns:
        One dict per (task, seed), tasks outer: ``{"prompt": observation, "task": name,
        "seed": seed}``, ready for ``datasets.Dataset.from_list``.
    """
    import etpo_gym  # noqa: F401 - registers the ids

    names = _task_names(tasks)
    seed_list = _seed_list(seeds)
    if not names or not seed_list:
        raise ConfigError(f"prompt_dataset needs tasks and seeds; got {tasks!r} and {seeds!r}")
    env_kwargs.setdefault("sandbox", "local")
    target, drop = env_kwargs.pop("target", None), env_kwargs.pop("drop", None)
    resolved = [t if isinstance(t, Task) else get_task(t, target=target, drop=drop) for t in names]
    env = gym.make(env_id, task=resolved[0], **env_kwargs)
    try:
        first = env.unwrapped.first_observation
        return [
            {"prompt": first(seed, task), "task": task.name, "seed": seed}
            for task in resolved
            for seed in seed_list
        ]
    finally:
        env.close()


class ScoringPool:
    """``workers`` warm envs that score one-step actions in parallel threads.

    Each worker owns one env (and so one sandbox, whose pool pre-starts the kernel of the next
    seed it will score while it scores the current one). Keep a pool for a whole training run:
    its kernels stay warm from one call to the next. ``close()`` (or ``with``) frees them.

    Args:
        workers: parallel envs (threads; the kernels are separate processes).
        env_id: the env that scores (``DataSci-v0`` and its variants; for
            ``DataSciNotebook-v0`` an action is a cell, so submit with ``%%submit``).
        sandbox: the backend, as for the env.
        env_kwargs: further env settings (``timeout``, ``memory_limit``, ``error_reward``, ...).
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        env_id: str = "DataSci-v0",
        sandbox: str = "auto",
        **env_kwargs: Any,
    ) -> None:
        import etpo_gym  # noqa: F401 - registers the ids

        valid = isinstance(workers, int) and not isinstance(workers, bool)
        if not valid or not 1 <= workers <= MAX_WORKERS:
            raise ConfigError(f"workers={workers!r} must be an integer in 1..{MAX_WORKERS}")
        self.env_id = env_id
        self._envs: list[gym.Env] = []
        try:
            for _ in range(workers):
                self._envs.append(gym.make(env_id, sandbox=sandbox, **env_kwargs))
        except BaseException:
            self.close()
            raise
        self._executor = cf.ThreadPoolExecutor(workers, thread_name_prefix="etpo-score")

    @property
    def workers(self) -> int:
        return len(self._envs)

    def score(
        self,
        codes: Sequence[str],
        tasks: str | Task | Sequence[str | Task],
        seeds: int | Sequence[int],
    ) -> list[dict[str, Any]]:
        """Score ``codes[i]`` on ``tasks[i]`` with episode seed ``seeds[i]`` (a single task or
        seed applies to all), as ``env.reset(seed=seeds[i], options={"task": tasks[i]})``
        followed by ``env.step(codes[i])`` would.

        Returns:
            One dict per code, in order: the step's ``info`` plus ``reward``, ``terminated`` and
            ``truncated``. An infra error has ``infra_error=True`` and reward 0 (trainers
            should drop it, not learn from it).
        """
        if self._executor is None:
            raise ConfigError("the scoring pool is closed")
        codes = list(codes)
        task_list = _task_names(tasks)
        seed_list = _seed_list(seeds)
        if len(task_list) == 1:
            task_list = task_list * len(codes)
        if len(seed_list) == 1:
            seed_list = seed_list * len(codes)
        if not len(codes) == len(task_list) == len(seed_list):
            raise ConfigError(
                f"score_batch: {len(codes)} codes, {len(task_list)} tasks and {len(seed_list)} "
                "seeds; give one task and seed per code, or a single one for all"
            )
        resolved = [t if isinstance(t, Task) else get_task(t) for t in task_list]
        items = list(zip(range(len(codes)), codes, resolved, seed_list))
        # Contiguous chunks: a GRPO group (one prompt, many completions) stays on one worker,
        # whose sandbox then keeps a spare kernel for its seed.
        size = -(-len(items) // self.workers) if items else 0
        chunks = [items[i : i + size] for i in range(0, len(items), size)] if size else []
        results: list[dict[str, Any]] = [{} for _ in items]
        futures = [
            self._executor.submit(self._score_chunk, env, chunk, results)
            for env, chunk in zip(self._envs, chunks)
        ]
        for future in futures:
            future.result()
        return results

    @staticmethod
    def _score_chunk(
        env: gym.Env, chunk: list[tuple[int, str, Task, int]], results: list[dict[str, Any]]
    ) -> None:
        for j, (index, code, task, seed) in enumerate(chunk):
            options: dict[str, Any] = {"task": task}
            if j + 1 < len(chunk):
                options["next_seed"] = chunk[j + 1][3]
            env.reset(seed=seed, options=options)
            _, reward, terminated, truncated, info = env.step(code)
            results[index] = {
                **info,
                "reward": float(reward),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
            }

    def close(self) -> None:
        """Close every env and its sandbox (harmless twice)."""
        executor, self._executor = getattr(self, "_executor", None), None
        if executor is not None:
            executor.shutdown(wait=True)
        envs, self._envs = self._envs, []
        for env in envs:
            env.close()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_batch(
    codes: Sequence[str],
    tasks: str | Task | Sequence[str | Task],
    seeds: int | Sequence[int],
    *,
    sandbox: str = "auto",
    workers: int = 2,
    env_id: str = "DataSci-v0",
    **env_kwargs: Any,
) -> list[dict[str, Any]]:
    """Score many one-step actions on a pool of ``workers`` warm sandboxes, with the results
    ``env.step`` gives for the same task and seed (see :meth:`ScoringPool.score`). For repeated
    calls keep a :class:`ScoringPool` instead: its kernels stay warm between calls."""
    with ScoringPool(workers, env_id=env_id, sandbox=sandbox, **env_kwargs) as pool:
        return pool.score(codes, tasks, seeds)
