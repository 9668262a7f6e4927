"""Language-model agents: a zero-shot causal LM (``lm``), a trained ETPO policy (``etpo``).

``LmAgent("starter")`` uses the shipped CPU starter policy; ``LmAgent("/models/CodeLlama-7b-hf",
device="cuda")`` any Hugging Face causal-LM directory; ``etpo_policy("runs/demo")`` the policy of
an ETPO run. Both are registered as leaderboard agents in pyproject.toml (``lm[:PATH]``,
``etpo:RUN_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class LmAgent:
    """A zero-shot causal LM (the shipped starter, or a local Hugging Face model directory).

    Samples one body per step, conditioned on the observation."""

    def __init__(
        self,
        model: str = "starter",
        *,
        device: str = "cpu",
        temperature: float = 0.8,
        top_k: int = 50,
        max_new_tokens: int = 160,
    ) -> None:
        from etpo_agents.etpo.agent import EtpoAgent
        from etpo_agents.etpo.models import resolve_model_path

        self.name = "lm" if model == "starter" else f"lm:{model}"
        self._sampler = EtpoAgent.from_checkpoint(
            resolve_model_path(model),
            device=device,
            name=self.name,
            temperature=temperature,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
        )

    def reset(self, *, task: str, seed: int) -> None:
        self._sampler.reset(task=task, seed=seed)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return self._sampler.act(observation, info)


def etpo_policy(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> Any:
    """A trained ETPO policy: a run directory, its checkpoint, or a Hugging Face model directory.

    ``starter`` is the shipped starter policy. The agent is named ``etpo:<run name>``."""
    from etpo_agents.etpo.agent import EtpoAgent
    from etpo_agents.etpo.models import resolve_model_path

    path = resolve_model_path("starter") if str(run_dir) == "starter" else Path(run_dir)
    return EtpoAgent.from_checkpoint(path, device=device, name=f"etpo:{run_name(path)}")


def run_name(path: str | os.PathLike[str]) -> str:
    """The run a policy path belongs to: ``runs/demo/checkpoint/policy`` → ``demo``."""
    path = Path(path).resolve()
    while path.name in ("policy", "checkpoint") and path.parent != path:
        path = path.parent
    return path.name
