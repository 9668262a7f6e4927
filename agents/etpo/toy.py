"""A known-answer environment for the agent loop: a two-step token game, and a tiny LM for it.

``EtpoToy-v0``: the first observation is ``"pick"``, the second ``"again"``; an action is text,
of which only the first word counts. Reward 1 for ``c`` after ``pick`` and for ``a`` after
``again``, else 0; the episode ends after two actions. The soft-optimal policy starts its first
action with ``c`` and its second with ``a`` (return 2). ``make_toy_model(dir)`` writes a tiny
random GPT-2 with a word-level tokenizer over this game's words, so ETPO can learn it in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

WORDS = ["<eos>", "pick", "again", "a", "b", "c", "d"]
BEST = {"pick": "c", "again": "a"}


class EtpoToyEnv(gym.Env):
    """Two observations, four answer words, one rewarded answer per observation."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Text(max_length=16, charset="abcdefghijklmnopqrstuvwxyz")
        self.action_space = spaces.Text(max_length=64, charset="abcdefghijklmnopqrstuvwxyz <>")
        self._obs = "pick"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs = "pick"
        return self._obs, {}

    def step(self, action: str):
        words = str(action).split()
        first = words[0] if words else ""
        reward = 1.0 if first == BEST[self._obs] else 0.0
        done = self._obs == "again"
        self._obs = "again"
        info: dict[str, Any] = {"status": "ok", "task": "toy"}
        return self._obs, reward, done, False, info


gym.register("EtpoToy-v0", entry_point=EtpoToyEnv)


def make_toy_model(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny random GPT-2 + word-level tokenizer for :class:`EtpoToyEnv`; returns the dir."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<eos>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>", unk_token="<eos>"
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(WORDS),
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
