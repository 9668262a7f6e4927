"""A trained (or any) causal-LM policy as a leaderboard agent: ``act(observation, info) -> code``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError


def policy_dir(path: str | os.PathLike[str]) -> Path:
    """The Hugging Face directory of π: ``RUN/checkpoint/policy``, ``CKPT/policy`` or ``path``."""
    path = Path(path)
    for candidate in (path / "checkpoint" / "policy", path / "policy", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise ConfigError(
        f"{str(path)!r} holds no policy: expected a run directory, a checkpoint directory with "
        "policy/, or a Hugging Face model directory"
    )


class EtpoAgent:
    """Samples code from a causal LM (an ETPO checkpoint's π): the agent contract."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "etpo",
        temperature: float = 0.8,
        top_k: int = 50,
        max_new_tokens: int = 160,
        seed: int = 0,
    ) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.temperature, self.top_k, self.max_new_tokens = temperature, top_k, max_new_tokens
        self.seed = seed
        self._calls = 0

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str = "cpu", **kwargs: Any
    ) -> EtpoAgent:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        directory = policy_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory).to(device).eval()
        return cls(model, tokenizer, **kwargs)

    def reset(self, *, task: str, seed: int) -> None:
        """Episode start: samples follow the episode seed."""
        self.seed, self._calls = seed, 0

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        return self.act_batch([observation], seed=self.seed * 7919 + self._calls)[0]

    def sample(self, observation: str, n: int, seed: int = 0, batch: int = 64) -> list[str]:
        """``n`` bodies for one observation, drawn in batches of ``batch`` (seeded)."""
        import torch

        from etpo_agents.starter.sample import sample_bodies

        context = int(getattr(self.model.config, "n_positions", 0) or 2048)
        out: list[str] = []
        with torch.no_grad():
            for start in range(0, n, batch):
                out += sample_bodies(
                    self.model,
                    self.tokenizer,
                    observation,
                    n=min(batch, n - start),
                    temperature=self.temperature,
                    top_k=self.top_k,
                    max_new_tokens=min(self.max_new_tokens, context - 1),
                    seed=seed * 1_000_003 + start,
                )
        return out

    def act_batch(self, observations: list[str], seed: int = 0) -> list[str]:
        import torch

        from etpo_agents.starter.sample import sample_bodies

        self._calls += 1
        context = int(getattr(self.model.config, "n_positions", 0) or 2048)
        max_new = min(self.max_new_tokens, context - 1)
        out = []
        with torch.no_grad():
            for i, observation in enumerate(observations):
                out += sample_bodies(
                    self.model,
                    self.tokenizer,
                    observation,
                    n=1,
                    temperature=self.temperature,
                    top_k=self.top_k,
                    max_new_tokens=max_new,
                    seed=seed + i,
                )
        return out
