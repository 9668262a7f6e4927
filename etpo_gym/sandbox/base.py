"""The small interface every code-execution sandbox implements.

A sandbox owns one Jupyter kernel at a time (and whatever isolates it: a process, a container).
Its life:

    with make_sandbox("local") as sb:      # start() on enter, close() on exit
        sb.reset(seed=0)                   # a fresh kernel, empty work, data and output directories
        sb.put_data({"x_train": X, "y_train": y, "x_eval": X_eval})
        result = sb.execute(code, timeout=60)
        preds = sb.read_output("pred.npy", shape=(len(X_eval),))  # header checked before reading

``execute`` never raises because of anything the kernel did: syntax errors, exceptions, timeouts,
MemoryError, kernel death, forged or oversized messages all come back as an :class:`ExecResult`
with a ``status`` and structured facts. It raises :class:`~etpo_gym.errors.SandboxError` only when
the host could not get a started kernel *before* running the code (the caller reports
``infra_error``). After any status, the next ``execute`` works: the sandbox interrupts or restarts
the kernel as needed, and ``restarted`` says when the kernel's state was lost.

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

#: What ``isolation`` may say (also ``info["isolation"]``): ``"none"`` — a plain process that can
#: read the host's files; ``"namespaces"`` — a local process in its own mount/pid/net namespaces;
#: ``"container"`` — a locked-down container.
ISOLATION_LEVELS: tuple[str, ...] = ("none", "namespaces", "container")


class Status(str, enum.Enum):
    """Outcome of one execution (also the env's ``info["status"]``)."""

    OK = "ok"
    ERROR = "error"  # the code raised, or the kernel sent something it should not have
    TIMEOUT = "timeout"  # ran past the host's deadline; interrupted or restarted
    OOM = "oom"  # hit the memory cap (MemoryError or killed by the OOM killer)
    KILLED = "killed"  # the kernel (or its container) died: os._exit, a signal, kill -1
    INFRA_ERROR = "infra_error"  # the host's machinery failed: not the agent's fault

    def __str__(self) -> str:
        return self.value


@dataclass
class ExecResult:
    """What one ``execute`` produced. Every field is a fact; nothing needs parsing.

    Attributes:
        status: the outcome, decided by the host: its own facts (process exit, OOM kill, its
            deadline) first, then the protocol's validity, then what the kernel reported.
        stdout: text the code printed (stdout and stderr streams), capped; ends with
            ``[output truncated: N bytes dropped]`` when output was dropped.
        error: ``"Type: message"`` for a failure, else ``""``.
        ename: exception type name reported by the kernel (``""`` if none).
        evalue: exception message reported by the kernel (``""`` if none).
        traceback: the traceback as plain text (ANSI colour codes removed), capped.
        outputs: the cell's outputs as nbformat v4 output dicts (for episode notebooks).
        elapsed_s: wall time of the execution, seconds.
        exit_status: the kernel process's exit status if it died (negative: killed by signal).
        oom: the memory cap was hit (MemoryError, or the OOM killer ended the kernel).
        deadline_exceeded: the host's deadline passed before the cell finished.
        output_truncated: output was dropped to stay within the byte caps.
        dropped_bytes: how many bytes of output (text, images, binary buffers) were dropped.
        protocol_errors: what the kernel sent that was forged, malformed, unsigned, oversized or
            unexpected (at most a few entries; the rest are counted in the last one).
        restarted: the kernel was replaced after this execution: its state is lost.
    """

    status: Status
    stdout: str = ""
    error: str = ""
    ename: str = ""
    evalue: str = ""
    traceback: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    exit_status: int | None = None
    oom: bool = False
    deadline_exceeded: bool = False
    output_truncated: bool = False
    dropped_bytes: int = 0
    protocol_errors: list[str] = field(default_factory=list)
    restarted: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def state_lost(self) -> bool:
        """Alias of ``restarted``: variables, imports and files of earlier cells are gone."""
        return self.restarted


class Sandbox(abc.ABC):
    """One isolated Jupyter kernel at a time. Implementations: ``LocalSandbox``,
    ``DockerSandbox`` (both :class:`~etpo_gym.sandbox.kernel.KernelSandbox`)."""

    #: short backend name, used in messages and ``info["sandbox"]``
    name: str = "base"

    @property
    def isolation(self) -> str:
        """One of :data:`ISOLATION_LEVELS`: what separates the code from the host."""
        return "none"

    @abc.abstractmethod
    def start(self) -> None:
        """Start the kernel (idempotent). Raises ``SandboxError`` if it cannot."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Switch to a fresh kernel in which no code has run, with empty directories and no data.

        ``seed`` becomes ``PYTHONHASHSEED`` of the new interpreter and seeds ``random`` and
        ``numpy.random`` there. Starts the sandbox if needed.
        """

    def prepare(self, seed: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Hint: a later ``reset`` will probably use ``seed``.

        A pooled sandbox pre-starts a kernel for it so that ``reset`` is fast; the default does
        nothing. ``reset`` with another seed must still be correct.
        """

    @abc.abstractmethod
    def put_data(self, arrays: Mapping[str, Any]) -> None:
        """Write inputs into the data directory, read-only to the kernel.

        Values are numpy arrays (saved as ``NAME.npy``) or pandas DataFrames/Series (saved as
        ``NAME.pkl``). Replaces whatever data was there; kept for a kernel that replaces this
        one after a restart.
        """

    @abc.abstractmethod
    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` as one cell and wait for it, at most ``timeout`` seconds (then interrupt,
        then restart)."""

    @abc.abstractmethod
    def read_output(
        self,
        name: str,
        *,
        shape: tuple[int, ...] | None = None,
        kinds: str = "biuf",
        max_bytes: int = 64 * 2**20,
    ) -> np.ndarray:
        """Read ``NAME`` (a ``.npy`` file) that the code wrote into the output directory.

        The header is read first and checked (dtype kind in ``kinds``, little-endian, not
        structured, ``shape`` if given, at most ``max_bytes``) before any array is allocated.
        Raises ``FileNotFoundError`` if the code wrote no such file and
        :class:`~etpo_gym.sandbox.outputs.OutputError` (a ``ValueError``) if it is not an
        acceptable array.
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
