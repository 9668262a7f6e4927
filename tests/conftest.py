"""Shared fixtures: sandbox backends and leak checks.

Docker tests skip on a machine without a usable engine and image, but fail when ``CI=true``:
CI must run them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Docker sandboxes take ready pods from a machine's pod server when one runs ("auto"): the suite
# starts its own servers where it tests them, and is not sped up or changed by one it found.
os.environ["ETPO_GYM_POD_SERVER"] = "off"

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


def require_docker() -> None:
    """Skip (or fail in CI) unless the Docker backend can run."""
    try:
        from etpo_gym.sandbox.docker import docker_status
    except ImportError as exc:  # pragma: no cover - the backend module is part of the package
        reason = f"the docker backend cannot be imported: {exc}"
    else:
        ok, reason = docker_status()
        if ok:
            return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Docker is required in CI but cannot be used: {reason}")
    pytest.skip(f"Docker cannot be used here: {reason}")


def real_csv(name: str) -> Path:
    """Path of a real dataset from ``../shared/data/real``; skip when absent."""
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found in {REAL_DATA} (needs the shared/ folder)")
    return path


@pytest.fixture(scope="module")
def docker_ready() -> None:
    """Module-level gate for tests that need the engine and the sandbox image."""
    require_docker()


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> str:
    """Each env test runs against every sandbox backend."""
    if request.param == "docker":
        require_docker()
    return request.param


def _own_sandbox_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"etpo-gym-local-{os.getpid()}[.-]*"))


@pytest.fixture(autouse=True, scope="session")
def _no_leaked_sandbox_dirs():
    """After the whole session, no local sandbox directory of this process remains."""
    yield
    import gc

    gc.collect()
    leaked = _own_sandbox_dirs()
    assert not leaked, f"local sandbox directories leaked: {sorted(map(str, leaked))}"
