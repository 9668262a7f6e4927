"""The small interface every code-execution sandbox implements.

A sandbox owns one Jupyter kernel (and whatever isolates it: a process, a container). Its life:

    with make_sandbox("local") as sb:      # start() on enter, close() on exit
        sb.reset(seed=0)                   # fresh kernel state, empty work dir, no data
        sb.put_data({"x_train": X, "y_train": y, "x_eval": X_eval})
        result = sb.execute(code, timeout=60)
        preds = sb.read_output("pred.npy")  # host-side, size-capped, allow_pickle=False

``execute`` never raises because of what the code does: syntax errors, exceptions, timeouts,
MemoryError, kernel death all come back as an :class:`ExecResult` with a ``status``. It raises
:class:`~etpo_gym.errors.SandboxError` only when the machinery itself fails (and then the caller
reports ``infra_error``). After any status, the next ``execute`` works (the sandbox recovers by
interrupting or restarting the kernel as needed).

Inside the kernel, data files are in the directory named by the ``ETPO_DATA_DIR`` environment
variable (read-only), predictions go into ``ETPO_OUT_DIR``, and the working directory is a private
scratch directory. Code may not rely on absolute paths.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Status(str, enum.Enum):
    """Outcome of one execution (also the env's ``info["status"]``)."""

    OK = "ok"
    ERROR = "error"  # the code raised (SyntaxError, ValueError, ...)
    TIMEOUT = "timeout"  # ran past the per-execution limit; interrupted or restarted
    OOM = "oom"  # hit the memory cap (MemoryError or killed by the OOM killer)
    KILLED = "killed"  # the kernel (or its container) died: os._exit, a signal, kill -1
    INFRA_ERROR = "infra_error"  # the sandbox machinery failed: not the agent's fault

    def __str__(self) -> str:
        return self.value


@dataclass
class ExecResult:
    """What one ``execute`` produced.

    Attributes:
        status: the outcome.
        stdout: text the code printed (stdout and stderr streams), capped.
        error: ``"ExceptionType: message"`` for a failure, else ``""``.
        traceback: the traceback as plain text (ANSI colour codes removed), capped.
        elapsed_s: wall time of the execution, seconds.
        outputs: the cell's outputs as nbformat v4 output dicts (for episode notebooks).
        restarted: the sandbox had to restart the kernel (state is lost).
    """

    status: Status
    stdout: str = ""
    error: str = ""
    traceback: str = ""
    elapsed_s: float = 0.0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    restarted: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


class Sandbox(abc.ABC):
    """One isolated Jupyter kernel. Subclasses: ``LocalSandbox``, ``DockerSandbox``."""

    #: short backend name, used in messages and ``info["sandbox"]``
    name: str = "base"

    @abc.abstractmethod
    def start(self) -> None:
        """Start the kernel (idempotent). Raises ``SandboxError`` if it cannot."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Give a fresh kernel state: new interpreter, empty work, data and output directories.

        ``seed`` becomes ``PYTHONHASHSEED`` of the new interpreter and seeds ``random`` and
        ``numpy.random`` there. Starts the sandbox if needed.
        """

    def prepare(self, seed: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Hint: the next ``reset`` will probably use ``seed``.

        A pooled backend may pre-start a kernel for it so that ``reset`` is fast; the default does
        nothing. ``reset`` with another seed must still be correct.
        """

    @abc.abstractmethod
    def put_data(self, arrays: Mapping[str, Any]) -> None:
        """Write inputs into the data directory, read-only to the kernel.

        Values are numpy arrays (saved as ``NAME.npy``) or pandas DataFrames/Series (saved as
        ``NAME.pkl``). Replaces whatever data was there.
        """

    @abc.abstractmethod
    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` as one cell and wait for it, at most ``timeout`` seconds."""

    @abc.abstractmethod
    def read_output(self, name: str, max_bytes: int = 64 * 2**20) -> np.ndarray:
        """Read ``NAME`` (a ``.npy`` file) from the output directory.

        Refuses symlinks, non-regular files, files over ``max_bytes`` and pickled objects.
        Raises ``FileNotFoundError`` if the code wrote no such file, ``ValueError`` if it is not
        an acceptable array.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the kernel and free every resource. Harmless to call twice."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether ``close()`` has run."""

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Last resort only: owners call close(). Never raise from a finaliser.
        try:
            if not self.closed:
                self.close()
        except Exception:
            pass
