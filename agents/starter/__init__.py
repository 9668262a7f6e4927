"""The starter policy: a tiny GPT-2 (about 1.1M parameters) that writes ``build_model`` bodies.

Built offline from a generated corpus (:mod:`.corpus`) by :mod:`.build` and shipped in
``checkpoint/`` as a standard Hugging Face directory, so that the ETPO agent can start training
on a CPU with no download and no build at run time::

    from etpo_agents.starter import load_starter
    model, tokenizer = load_starter()

Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_starter", "starter_path"]


def starter_path() -> Path:
    """The shipped checkpoint directory (``config.json``, ``model.safetensors``, tokenizer...)."""
    return Path(__file__).resolve().parent / "checkpoint"


def load_starter(device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the shipped checkpoint; the model in eval mode on ``device``.

    Raises:
        FileNotFoundError: the checkpoint is missing (rebuild it with
            ``python -m etpo_agents.starter.build --out <starter_path()> --seed 0``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = starter_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no starter checkpoint in {path}; build it with "
            f"`python -m etpo_agents.starter.build --out {path} --seed 0`"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(device)
    model.eval()
    return model, tokenizer
