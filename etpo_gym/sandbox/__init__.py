"""Code-execution sandboxes: a Jupyter kernel behind the small :class:`Sandbox` interface.

Backends: ``"local"`` (a kernel process on this machine), ``"docker"`` (a kernel in a locked-down
container), ``"auto"`` (Docker when the engine answers and the image exists, else local with one
warning saying why).
"""

from __future__ import annotations

import warnings
from typing import Any

from etpo_gym.errors import ConfigError
from etpo_gym.sandbox.base import ExecResult, Sandbox, Status

SANDBOXES: tuple[str, ...] = ("auto", "local", "docker")

__all__ = ["SANDBOXES", "ExecResult", "Sandbox", "Status", "make_sandbox", "resolve_backend"]


def resolve_backend(name: str) -> str:
    """Which backend ``name`` means on this machine (``"auto"`` → ``"docker"`` or ``"local"``)."""
    if name not in SANDBOXES:
        raise ConfigError(f"sandbox={name!r} is not one of {SANDBOXES}")
    if name != "auto":
        return name
    from etpo_gym.sandbox.docker import docker_status

    ok, reason = docker_status()
    if ok:
        return "docker"
    warnings.warn(
        f"sandbox='auto': using the local kernel sandbox because Docker cannot be used: {reason}",
        stacklevel=3,
    )
    return "local"


def make_sandbox(name: str = "local", **kwargs: Any) -> Sandbox:
    """Build (not start) a sandbox backend by name."""
    backend = resolve_backend(name)
    if backend == "docker":
        from etpo_gym.sandbox.docker import DockerSandbox

        return DockerSandbox(**kwargs)
    from etpo_gym.sandbox.local import LocalSandbox

    return LocalSandbox(**kwargs)
