"""Exceptions raised by etpo-gym.

Every domain error derives from :class:`EtpoGymError`. Errors caused by the agent's code are never
raised: they are reported in the observation and ``info``. What is raised is bad configuration
(:class:`ConfigError`, :class:`TaskError`) and failures of the sandbox machinery itself
(:class:`SandboxError` and subclasses), which the env reports as ``info["infra_error"] = True``.
"""

from __future__ import annotations


class EtpoGymError(Exception):
    """Base class of every error raised by etpo-gym."""


class ConfigError(EtpoGymError, ValueError):
    """A setting has a value that is not accepted; the message names the value and the options."""


class TaskError(EtpoGymError, ValueError):
    """A task cannot be built (bad CSV path, missing target column, single-class target, ...)."""


class SandboxError(EtpoGymError, RuntimeError):
    """The sandbox machinery failed (not the agent's code).

    Attributes:
        backend: name of the sandbox backend (``"local"``, ``"docker"``).
        detail: extra facts (exit code, stderr tail, container id), free-form.
    """

    def __init__(self, message: str, *, backend: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.backend = backend
        self.detail = detail

    def __str__(self) -> str:
        text = super().__str__()
        if self.backend:
            text = f"[{self.backend}] {text}"
        if self.detail:
            text = f"{text}\n{self.detail}"
        return text


class SandboxUnavailable(SandboxError):
    """The backend cannot be used on this machine (no Docker engine, image missing, ...)."""
