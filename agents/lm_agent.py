"""A zero-shot language-model agent: samples code from any local causal LM (no training).

``LmAgent("starter")`` uses the shipped CPU starter policy; ``LmAgent("/models/CodeLlama-7b-hf",
device="cuda")`` any Hugging Face causal-LM directory.
"""

from __future__ import annotations

from typing import Any


class LmAgent:
    """Samples one body per step from a causal LM conditioned on the observation."""

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
