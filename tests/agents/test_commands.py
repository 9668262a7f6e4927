"""The verbs the agents package adds to etpo-gym."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Two prompts of one length: no padding, so generate drops the all-ones mask, and the
# finished row is filled with the end-of-sequence token (= the starter's pad token).
SCRIPT = """
import sys
from etpo_agents.commands import quiet_padding_warning
from etpo_agents.etpo.models import EtpoModels
if sys.argv[1] == "quiet":
    quiet_padding_warning()
models = EtpoModels("starter")
prompt = "def build_model(x_train, y_train):\\n<FILL_ME>\\n    return model\\n"
models.generate([prompt, prompt], max_new_tokens=120, seed=0)
"""


@pytest.mark.slow
def test_training_shows_no_padding_warning_for_a_mask_it_passed():
    from etpo_agents.starter import starter_path

    if not (starter_path() / "model.safetensors").is_file():
        pytest.skip("the starter checkpoint is not built")
    seen = {}
    for mode in ("loud", "quiet"):
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        seen[mode] = done.stderr
    assert "attention_mask" in seen["loud"]  # transformers warns here without the filter
    assert "attention_mask" not in seen["quiet"]
