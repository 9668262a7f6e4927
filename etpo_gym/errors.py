"""Exceptions raised by etpo-gym.

Every domain error derives from :class:`EtpoGymError` and carries its facts as attributes; the
message is built from them. Errors caused by the agent's code are never raised: they are reported
in the observation and ``info``. What is raised is bad configuration (:class:`ConfigError`,
:class:`TaskError`) and failures of the host's own sandbox machinery (:class:`SandboxError` and
subclasses), which the env reports as ``info["infra_error"] = True`` after one retry.
"""

from __future__ import annotations


class EtpoGymError(Exception):
    """Base class of every error raised by etpo-gym."""


class ConfigError(EtpoGymError, ValueError):
    """A setting has a value that is not accepted; the message names the value and the options."""


class TaskError(EtpoGymError, ValueError):
    """A task cannot be built (bad CSV path, missing target column, single-class target, ...)."""


class SandboxError(EtpoGymError, RuntimeError):
    """The host's sandbox machinery failed (not the agent's code).

    Attributes:
        backend: name of the sandbox backend (``"local"``, ``"docker"``).
        detail: extra facts for a human (log tail, engine message), free-form.
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


class EngineUnavailable(SandboxUnavailable):
    """The container engine cannot be reached or used.

    Attributes:
        reason: why, in one line (``"/var/run/docker.sock: No such file or directory"``).
    """

    def __init__(self, reason: str, *, backend: str = "docker") -> None:
        super().__init__(f"the container engine cannot be used: {reason}", backend=backend)
        self.reason = reason


class ImageMissing(SandboxUnavailable):
    """The sandbox image is not built.

    Attributes:
        image: the image tag that was looked for.
    """

    def __init__(self, image: str, *, backend: str = "docker") -> None:
        super().__init__(
            f"the sandbox image {image} is not built: run `etpo-gym sandbox build` "
            "(or docker/build.sh)",
            backend=backend,
        )
        self.image = image


class ImageBuildError(SandboxError):
    """Building the sandbox image failed.

    Attributes:
        tag: the image tag that was being built.
        log_tail: the last lines of the build log.
    """

    def __init__(self, tag: str, reason: str, *, log_tail: str = "") -> None:
        super().__init__(f"building {tag} failed: {reason}", backend="docker", detail=log_tail)
        self.tag = tag
        self.reason = reason
        self.log_tail = log_tail


class KernelStartError(SandboxError):
    """A kernel could not be started, before any agent code ran in it.

    Attributes:
        reason: what went wrong, in one line.
        exit_status: the kernel process's exit status if it exited (negative: killed by that
            signal), else ``None``.
        log_tail: the end of the kernel's own log (stdout and stderr).
    """

    def __init__(
        self,
        reason: str,
        *,
        backend: str = "",
        exit_status: int | None = None,
        log_tail: str = "",
    ) -> None:
        message = reason if exit_status is None else f"{reason} (exit status {exit_status})"
        super().__init__(message, backend=backend, detail=log_tail)
        self.reason = reason
        self.exit_status = exit_status
        self.log_tail = log_tail


class OutputError(EtpoGymError, ValueError):
    """A file the code wrote (predictions) is refused: the agent's fault, never raised out of
    the env (it becomes an ``error`` step).

    Attributes:
        name: the file name.
        reason: why it was refused.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
