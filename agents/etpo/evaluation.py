"""Scoring policies on fixed episodes, paired across policies: the learning benchmark's yardstick.

An *episode* is a task and an episode seed. The seed fixes the holdout split and the kernel's
RNG, so the reward of a body on an episode is a function of the two (up to timeouts on a loaded
machine). Every policy is scored on the same episodes (one attempt each: the task metric, or the
env's error reward), so two policies compare *paired*: per-episode differences, whose standard
error removes the split-to-split variance both share.

Validation episodes (:data:`VALIDATION_SEED` onwards) choose settings: the starter's temperature,
ETPO's β and learning rates. Evaluation episodes (:data:`EVALUATION_SEED` onwards) are only
scored, never used to choose. No training run sees either: training draws its episode seeds
from ``seed * 100_003`` onwards.

:class:`EpisodeScorer` runs each (episode, body) pair once through a one-step DataSci env and
memoises the reward (optionally in a JSON-lines file), so policies that write the same body for
the same episode, as near-greedy policies do, cost one execution.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import etpo_gym  # noqa: F401 - registers DataSci-v0
from etpo_gym.errors import ConfigError

VALIDATION_SEED = 800_000
EVALUATION_SEED = 900_000
SPLITS = {"validation": VALIDATION_SEED, "evaluation": EVALUATION_SEED}


def episode_seeds(split: str, episodes: int) -> list[int]:
    """The seeds of the first ``episodes`` episodes of ``split`` (validation or evaluation)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not known; accepted: {', '.join(SPLITS)}")
    if episodes < 1:
        raise ConfigError(f"episodes={episodes!r} must be >= 1")
    return [SPLITS[split] + i for i in range(episodes)]


def _key(task: str, seed: int, body: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()[:24]
    return f"{task}|{seed}|{digest}"


class EpisodeScorer:
    """Rewards of bodies on given episodes: one attempt each through ``DataSci-v0``.

    Args:
        sandbox: the env's sandbox backend.
        timeout: seconds per executed body.
        cache: a JSON-lines file of earlier results to read and extend (``None``: memory only).
        env_kwargs: more ``gym.make`` keywords (the same for every task).
    """

    def __init__(
        self,
        sandbox: str = "local",
        timeout: float = 30.0,
        cache: str | os.PathLike[str] | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.sandbox, self.timeout = sandbox, float(timeout)
        self.env_kwargs = dict(env_kwargs or {})
        self.cache_path = Path(cache) if cache is not None else None
        self._memo: dict[str, dict[str, Any]] = {}
        self._envs: dict[str, gym.Env] = {}
        self._prompts: dict[str, str] = {}
        self.executed = 0
        if self.cache_path is not None and self.cache_path.is_file():
            for line in self.cache_path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                self._memo[record["key"]] = record

    def _env(self, task: str) -> gym.Env:
        if task not in self._envs:
            # No pre-started kernel: episodes here are given by seed, not drawn by the env, so a
            # spare kernel started for the env's own next seed would be thrown away unused.
            self._envs[task] = gym.make(
                "DataSci-v0",
                task=task,
                sandbox=self.sandbox,
                max_steps=1,
                timeout=self.timeout,
                sandbox_kwargs={"pool_size": 0} if self.sandbox == "local" else None,
                **self.env_kwargs,
            )
        return self._envs[task]

    def prompt(self, task: str, seed: int | None = None) -> str:
        """The first observation of ``task``'s episodes (the same for every episode seed)."""
        if task not in self._prompts:
            first = EVALUATION_SEED if seed is None else seed
            self._prompts[task] = self._env(task).reset(seed=first)[0]
        return self._prompts[task]

    def score(self, task: str, seeds: Sequence[int], bodies: Sequence[str]) -> list[dict[str, Any]]:
        """``{"reward", "status"}`` of ``bodies[i]`` on episode ``seeds[i]``; ``reward`` is
        ``None`` where the sandbox failed twice (an infra error: not the policy's fault)."""
        if len(seeds) != len(bodies):
            raise ConfigError(f"{len(seeds)} seeds for {len(bodies)} bodies: give one per body")
        out = []
        for seed, body in zip(seeds, bodies):
            key = _key(task, int(seed), body)
            if key not in self._memo:
                record = self._run(task, int(seed), body)
                if record["reward"] is None:
                    out.append(record)
                    continue
                record["key"] = key
                self._memo[key] = record
                if self.cache_path is not None:
                    with open(self.cache_path, "a") as fh:
                        fh.write(json.dumps(record) + "\n")
            out.append({k: self._memo[key][k] for k in ("reward", "status")})
        return out

    def _run(self, task: str, seed: int, body: str) -> dict[str, Any]:
        env = self._env(task)
        expected = self.prompt(task)
        for _attempt in range(2):
            observation, _ = env.reset(seed=seed)
            if observation != expected:
                raise ConfigError(
                    f"{task}: episode {seed} starts with another prompt than episode "
                    f"{EVALUATION_SEED}; bodies sampled for one prompt cannot be scored on it"
                )
            _, reward, _, _, info = env.step(body)
            self.executed += 1
            if not info.get("infra_error"):
                return {"reward": float(reward), "status": str(info.get("status"))}
        return {"reward": None, "status": "infra_error"}

    def close(self) -> None:
        """Close every env (and its kernels); closing twice is harmless."""
        envs, self._envs = self._envs, {}
        for env in envs.values():
            env.close()

    def __enter__(self) -> EpisodeScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_policy(
    policy: str | os.PathLike[str],
    prompt: str,
    n: int,
    *,
    temperature: float,
    seed: int,
    top_k: int = 50,
    max_new_tokens: int = 160,
    batch: int = 64,
) -> list[str]:
    """``n`` bodies sampled from a policy directory (``temperature=0``: greedy)."""
    from .agent import EtpoAgent

    agent = EtpoAgent.from_checkpoint(
        policy, temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens
    )
    return agent.sample(prompt, n, seed=seed, batch=batch)


@dataclass
class Paired:
    """Mean per-episode difference a − b over episodes both were scored on, and its SE."""

    diff: float
    se: float
    episodes: int

    @property
    def z(self) -> float:
        """The difference in standard errors (±inf when the SE is 0 and the mean is not)."""
        if self.se > 0:
            return self.diff / self.se
        return 0.0 if self.diff == 0 else math.copysign(math.inf, self.diff)


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> Paired:
    """Paired difference of two per-episode reward lists (``None``: not scored, left out)."""
    if len(a) != len(b):
        raise ConfigError(f"paired lists differ in length ({len(a)} vs {len(b)})")
    d = np.array([x - y for x, y in zip(a, b) if x is not None and y is not None], dtype=float)
    if len(d) == 0:
        return Paired(float("nan"), float("nan"), 0)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return Paired(float(d.mean()), se, len(d))
