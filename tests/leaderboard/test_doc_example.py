"""The custom-agent example in docs/leaderboard.md (and the README) runs as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _example(path: Path) -> str:
    text = path.read_text()
    match = re.search(r"<!-- custom-agent-example -->\n```python\n(.*?)```", text, re.S)
    assert match, f"no custom-agent example in {path}"
    return match.group(1)


@pytest.mark.slow
def test_custom_agent_example_runs_on_the_leaderboard(tmp_path):
    code = _example(REPO / "docs" / "leaderboard.md")
    assert code == _example(REPO / "README.md"), "README and docs show different examples"
    assert len(code.strip().splitlines()) <= 20
    (tmp_path / "my_agent.py").write_text(code.replace("seeds=3", "seeds=1"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "my_agent.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    board = (tmp_path / "runs" / "mine" / "leaderboard.md").read_text()
    assert "`my-forest`" in board and "`logreg`" in board  # shown by its name
    assert "4/4 cells" in board
