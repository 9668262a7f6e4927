"""Code-execution sandboxes: a Jupyter kernel behind the small :class:`Sandbox` interface.

One kernel core (:class:`~etpo_gym.sandbox.kernel.KernelSandbox`) drives kernels that a backend's
Popen-like provisioner launches (``provisioner.py``). Backends: ``"local"`` (a kernel process on
this machine, isolation ``"namespaces"`` through bubblewrap where it works, else ``"none"``), ``"docker"`` (a kernel in a locked-down container, isolation
``"container"``), ``"auto"`` (Docker when the engine answers and the image exists, else local with
one warning saying why).

Modules, bottom up: ``zmtp`` (the byte-bounded transport), ``wire`` (signed Jupyter messages under
caps), ``client`` (one kernel's channels), ``files``/``outputs`` (symlink-proof file handling,
defensive ``.npy`` reading), ``provisioner`` (the backend interface), ``kernel`` (the core),
``confine``/``cgroup``/``scratch`` (the local kernel's confinement, limits and
scratch directories), ``local``/``docker`` (backends), ``engine``/``image``/``manage`` (the Docker engine, the image, the
``etpo-gym sandbox`` command).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from etpo_gym.errors import ConfigError
from etpo_gym.sandbox.base import ISOLATION_LEVELS, ExecResult, Sandbox, Status

SANDBOXES: tuple[str, ...] = ("auto", "local", "docker")

__all__ = [
    "ISOLATION_LEVELS",
    "SANDBOXES",
    "ExecResult",
    "Sandbox",
    "Status",
    "make_sandbox",
    "resolve_backend",
]


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
    """Build (not start) a sandbox backend by name.

    Settings that only the other backend takes (``cpus``, ``pids_limit``, ``python``, ...) are
    dropped, so that one set of ``sandbox_kwargs`` works with ``sandbox="auto"`` whichever backend
    it picks; a setting that no backend takes is a :class:`ConfigError`.
    """
    from etpo_gym.sandbox.docker import DockerSandbox
    from etpo_gym.sandbox.local import LocalSandbox

    backend = resolve_backend(name)
    classes: dict[str, type[Sandbox]] = {"local": LocalSandbox, "docker": DockerSandbox}
    takes = {key: set(inspect.signature(cls).parameters) for key, cls in classes.items()}
    unknown = sorted(set(kwargs) - set().union(*takes.values()))
    if unknown:
        accepted = "; ".join(f"{key}: {sorted(names)}" for key, names in takes.items())
        raise ConfigError(f"sandbox setting(s) {unknown} are not accepted; accepted: {accepted}")
    own = {key: value for key, value in kwargs.items() if key in takes[backend]}
    return classes[backend](**own)
