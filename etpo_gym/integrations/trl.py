"""TRL (``GRPOTrainer``) on etpo-gym: a reward function, a multi-step rollout, tool environments.

Needs the ``trl`` extra (``pip install "etpo-gym[trl]"``). Importing this module imports neither
trl nor torch; they are imported inside the functions that use them.

Three ways in, from simple to agentic::

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    import etpo_gym
    from etpo_gym.integrations.trl import EnvReward, Rollout, environment_factory

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


class Rollout:
    """A multi-step ``rollout_func`` for ``GRPOTrainer``, driving ``DataSci-v0`` or
    ``DataSciNotebook-v0`` (any registered id of the family).

    For each prompt the trainer hands over (one completion per prompt: TRL's sampler already
    repeats each prompt ``num_generations`` times), the episode of the prompt's task and seed is
    reset (found from ``rows``; each run of ``num_generations`` copies shares one seed, so a
    GRPO group is scored on one split), then up to ``max_turns`` times: the model generates (in eval mode, under
    ``torch.no_grad()``: generating in train mode with gradient checkpointing gives garbage),
    the env steps on the decoded text, and the env's incremental feedback (its chat-form
    observation: the error, the cell's output, the score) plus ``feedback_suffix`` is appended as
    tokens with ``env_mask`` 0. The result carries ``prompt_ids``, ``completion_ids``, ``logprobs``
    (the sampling log-probabilities; 0 for env tokens), ``env_mask``, and, for the reward
    function :attr:`reward`, ``env_return``: the episode's return (sum of rewards), plus
    ``error_reward`` when the episode had not ended after ``max_turns``; ``None`` after an infra
    error.

    Args:
        rows: the dataset rows (``prompt``, ``task``, ``seed``) from :func:`etpo_gym.prompt_dataset`
            (text prompts: ``observation_format="text"``, the default).
        env_id: the env (made with ``observation_format="chat"`` to get incremental feedback).
        max_turns: model turns per episode.
        max_turn_tokens: new tokens per turn.
        max_feedback_tokens: tokens of one feedback (its tail is kept).
        feedback_suffix: text after each feedback (e.g. the function template the model was
            trained to complete).
        sandbox, env_kwargs: the env's settings.
    """

    __name__ = "etpo_gym_rollout"

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        env_id: str = "DataSci-v0",
        max_turns: int = 3,
        max_turn_tokens: int = 160,
        max_feedback_tokens: int = 96,
        feedback_suffix: str = "",
        sandbox: str = "auto",
        **env_kwargs: Any,
    ) -> None:
        import gymnasium as gym

        import etpo_gym  # noqa: F401 - registers the ids

        for key, value in (
            ("max_turns", max_turns),
            ("max_turn_tokens", max_turn_tokens),
            ("max_feedback_tokens", max_feedback_tokens),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"Rollout {key}={value!r} must be an integer >= 1")
        self._lookup: dict[str, list[tuple[str, int]]] = {}
        for row in rows:
            self._lookup.setdefault(_key(row["prompt"]), []).append(
                (str(row["task"]), int(row["seed"]))
            )
        if not self._lookup:
            raise ConfigError("Rollout needs the dataset's rows (etpo_gym.prompt_dataset(...))")
        self._cursor: dict[str, int] = {}
        self.max_turns = max_turns
        self.max_turn_tokens = max_turn_tokens
        self.max_feedback_tokens = max_feedback_tokens
        self.feedback_suffix = feedback_suffix
        env_kwargs["observation_format"] = "chat"
        self.env = gym.make(env_id, sandbox=sandbox, **env_kwargs)
        self.error_reward = float(self.env.unwrapped.error_reward)
        self.episodes: list[dict[str, Any]] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        args = trainer.args
        out: dict[str, list[Any]] = {
            key: []
            for key in ("prompt_ids", "completion_ids", "logprobs", "env_mask", "env_return")
        }
        # A GRPO group (num_generations copies of one row, in a row) is scored on one seed, so
        # its completions are compared on one split; the next group of the same prompt (another
        # row, or the same row later) takes the prompt's next seed.
        size = int(getattr(args, "num_generations", 0) or 0)
        choices, previous = [], None
        for i, prompt in enumerate(prompts):
            key = _key(prompt)
            if key != previous or (size and i % size == 0):
                choice = self._next_choice(key)
                previous = key
            choices.append(choice)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for i, (prompt, (task, seed)) in enumerate(zip(prompts, choices)):
                    # the sandbox pre-starts the next episode's kernel while this one runs
                    upcoming = choices[i + 1][1] if i + 1 < len(choices) else None
                    episode = self._episode(
                        model, tokenizer, args, message_text(prompt), task, seed, upcoming
                    )
                    for name in out:
                        out[name].append(episode[name])
        finally:
            model.train(training)
        return out

    def reward(self, prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[Any]:
        """The reward function that goes with this rollout: the episode return it computed."""
        return list(kwargs["env_return"])

    reward.__name__ = "etpo_gym_episode_return"  # type: ignore[attr-defined]

    def close(self) -> None:
        self.env.close()

    # -- internals ---------------------------------------------------------------------------

    def _next_choice(self, key: str) -> tuple[str, int]:
        choices = self._lookup.get(key)
        if not choices:
            raise ConfigError(
                "Rollout got a prompt that is not in its rows: build the dataset and the Rollout "
                "from the same etpo_gym.prompt_dataset(...) rows"
            )
        index = self._cursor.get(key, 0)
        self._cursor[key] = index + 1
        return choices[index % len(choices)]

    def _episode(
        self,
        model: Any,
        tokenizer: Any,
        args: Any,
        prompt: str,
        task: str,
        seed: int,
        next_seed: int | None,
    ) -> dict[str, Any]:
        context = int(
            getattr(model.config, "n_positions", 0)
            or getattr(model.config, "max_position_embeddings", 0)
            or 2048
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        room = max(16, context - self.max_turn_tokens)
        prompt_ids = prompt_ids[-room:]  # the end of the prompt is what the model continues
        completion: list[int] = []
        logprobs: list[float] = []
        mask: list[int] = []
        options: dict[str, Any] = {"task": task}
        if next_seed is not None:
            options["next_seed"] = next_seed
        self.env.reset(seed=seed, options=options)
        total, done, infra = 0.0, False, False
        statuses = []
        for turn in range(self.max_turns):
            ids = prompt_ids + completion
            budget = min(self.max_turn_tokens, context - len(ids))
            if budget < 1:
                break
            new, new_logprobs = _sample(model, tokenizer, args, ids, budget)
            completion += new
            logprobs += new_logprobs
            mask += [1] * len(new)
            action = tokenizer.decode(new, skip_special_tokens=True)
            observation, reward, terminated, truncated, info = self.env.step(action)
            statuses.append(info.get("status"))
            total += float(reward)
            if info.get("infra_error"):
                infra = True
            done = bool(terminated or truncated)
            if done or turn == self.max_turns - 1:
                break
            text = "\n" + message_text(observation).strip() + "\n" + self.feedback_suffix
            feedback = tokenizer(text, add_special_tokens=False)["input_ids"]
            feedback = feedback[-self.max_feedback_tokens :]
            if len(prompt_ids) + len(completion) + len(feedback) >= context:
                break
            completion += feedback
            logprobs += [0.0] * len(feedback)
            mask += [0] * len(feedback)
        if not done:
            total += self.error_reward  # no scored answer within the turns
        record = {"task": task, "seed": seed, "statuses": statuses, "return": total}
        self.episodes.append(record)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion,
            "logprobs": logprobs,
            "env_mask": mask,
            "env_return": None if infra else total,
        }


def _key(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _sample(
    model: Any, tokenizer: Any, args: Any, ids: list[int], max_new_tokens: int
) -> tuple[list[int], list[float]]:
    """One sampled turn: the new token ids (through the first end-of-sequence token) and their
    log-probabilities under the distribution they were drawn from."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    eos = tokenizer.eos_token_id
    kwargs: dict[str, Any] = {
        "do_sample": True,
        "temperature": float(getattr(args, "temperature", 1.0) or 1.0),
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        "eos_token_id": eos,
        "output_scores": True,
        "return_dict_in_generate": True,
    }
    top_k = getattr(args, "top_k", None)
    kwargs["top_k"] = int(top_k) if top_k else 0
    top_p = getattr(args, "top_p", None)
    if top_p is not None:
        kwargs["top_p"] = float(top_p)
    output = model.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
    )
    new = output.sequences[0, len(ids) :].tolist()
    logprobs = []
    for step, token in enumerate(new):
        logprobs.append(float(torch.log_softmax(output.scores[step][0].float(), -1)[token]))
    if eos in new:
        end = new.index(eos) + 1
        new, logprobs = new[:end], logprobs[:end]
    return new, logprobs


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
