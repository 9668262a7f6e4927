"""Verbs that the agents package adds to the ``etpo-gym`` command.

pyproject.toml registers them in the entry-point group ``etpo_gym.commands``; ``etpo-gym VERB
ARGS...`` calls ``VERB(ARGS)``, and the first line of the docstring is the verb's line in
``etpo-gym --help``. This module imports nothing heavy: torch loads when a verb runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from etpo_gym.errors import EtpoGymError


class _PaddingWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "We strongly recommend passing in an `attention_mask`" not in record.getMessage()


def quiet_padding_warning() -> None:
    """Drop transformers' "passing an attention_mask" warning. ETPO always passes the mask;
    ``generate`` drops an all-ones mask itself and then warns about the end-of-sequence token
    (the starter's pad token too) that it appends to rows that have finished."""
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _PaddingWarningFilter) for f in logger.filters):
        logger.addFilter(_PaddingWarningFilter())


def train(argv: Sequence[str]) -> int:
    """train the ETPO agent on a DataSci task"""
    try:
        from etpo_agents.etpo.cli import main
    except ImportError as exc:
        raise EtpoGymError(
            f"the ETPO agent needs the [agent] extra (pip install 'etpo-gym[agent]'): {exc}"
        ) from exc
    quiet_padding_warning()
    return int(main(["train", *argv]) or 0)
