"""A multi-step ``rollout_func`` for TRL's ``GRPOTrainer`` on etpo-gym's envs.

It generates with the model (torch), so it lives in the agents package; the env-side pieces
(reward function, tool environments) are in :mod:`etpo_gym.integrations.trl`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etpo_gym.envs.chat import message_text
from etpo_gym.errors import ConfigError
from etpo_gym.integrations.trl import prompt_key


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
            self._lookup.setdefault(prompt_key(row["prompt"]), []).append(
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
            key = prompt_key(prompt)
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
