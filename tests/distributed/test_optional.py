"""Ray is an optional extra: nothing but ``etpo_gym.distributed`` imports it, and asking for a
cluster without it installed is one clear line."""

from __future__ import annotations

import subprocess
import sys

BLOCK_RAY = "import sys; sys.modules['ray'] = None\n"  # as if it were not installed


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_library_never_imports_ray():
    done = _python(
        "import sys, gymnasium as gym, etpo_gym, etpo_gym.leaderboard, etpo_gym.cli\n"
        "etpo_gym.cli.build_parser()\n"
        "gym.make('DataSci-v0', sandbox='local').close()\n"
        "print('ray' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_asking_for_ray_without_it_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    done = _python(
        BLOCK_RAY + "from etpo_gym.cli import main\n"
        f"sys.exit(main(['bench', '--agents', 'logreg', '--tasks', 'smoke-v0', '--out', {str(out)!r},"
        " '--ray', 'auto', '--quiet']))\n"
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "pip install 'etpo-gym[ray]'" in lines[0], done.stderr
    assert not out.exists()
    done = _python(
        BLOCK_RAY + "from etpo_gym.errors import ConfigError\n"
        "try:\n    import etpo_gym.distributed\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    assert "etpo-gym[ray]" in done.stdout, done.stderr
