"""Tiny real models for the agent tests (built offline in a temp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer GPT-2 with a word-level tokenizer (the toy game's words)."""
    from etpo_agents.etpo.toy import make_toy_model

    return make_toy_model(tmp_path_factory.mktemp("tiny_lm") / "model", seed=0)
