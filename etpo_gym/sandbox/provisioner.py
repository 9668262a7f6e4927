"""What a sandbox backend provides: a small Popen-like provisioner per kernel.

This follows jupyter_client's manager/provisioner split. The one kernel core,
:class:`~etpo_gym.sandbox.kernel.KernelSandbox`, owns everything that talks to a kernel —
connecting, the handshake, execute, timeout escalation, restarts, the pool of pre-started kernels,
data in and out, close. A backend only makes kernel processes and answers questions about them:

* a :class:`Backend` per sandbox holds what its kernels share (an engine connection, a root
  directory, a uid, a long-lived container) and makes one :class:`Provisioner` per kernel;
* a :class:`Provisioner` launches one kernel and then behaves like ``subprocess.Popen``:
  ``poll``, ``wait``, ``send_signal``, ``kill``, plus ``cleanup``, the connection, the host paths
  of its data and output directories, the facts of its death and its log.

"Launch a fresh kernel" promises a kernel *in which no code has run* and whose writable places
hold nothing from any earlier kernel; it does not promise a new process tree or container. A
backend may serve ``launch`` by forking a pre-imported kernel inside a long-lived boundary it has
wiped, as long as that promise holds.

Threads: the core calls ``Backend.provisioner`` and ``Provisioner.launch`` on its start-up worker
thread (one long-lived thread, so a parent-death signal tied to it lasts as long as the
sandbox), ``kill`` from any thread at any time (also while ``launch`` runs, to cancel it),
``cleanup`` once on its janitor thread after ``kill``, and the rest from the sandbox owner's
thread. ``Backend.open`` and ``Backend.close`` run on the owner's thread.
"""

from __future__ import annotations

import abc
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from etpo_gym.sandbox.files import open_dir_nofollow

#: The channels the host connects to. No stdin (the code cannot ask for input) and no heartbeat:
#: liveness comes from ``Provisioner.poll``.
HOST_CHANNELS: tuple[str, ...] = ("shell", "control", "iopub")

#: The ipc "port" (socket file suffix, ``<ip>-<port>``) of every channel a kernel binds.
IPC_PORTS: Mapping[str, int] = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}

#: ipykernel options every backend passes: no history database, quiet logs.
KERNEL_ARGS: tuple[str, ...] = ("--HistoryManager.enabled=False", "--IPKernelApp.log_level=ERROR")


def kernel_app_source() -> str:
    """Source of ``container/kernel_app.py``: the kernel application every backend starts
    (ipykernel's, with send queues that drop nothing); run it with ``python -c``."""
    return (Path(__file__).resolve().parent / "container" / "kernel_app.py").read_text()


def connection_info(key: str, ip: str) -> dict[str, object]:
    """The connection file contents for a kernel bound to ipc sockets ``<ip>-<port>``."""
    return {
        "transport": "ipc",
        "ip": ip,
        "key": key,
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
        **{f"{channel}_port": port for channel, port in IPC_PORTS.items()},
    }


def kernel_environment(seed: int) -> dict[str, str]:
    """Environment variables every kernel gets, whatever the backend (it adds its paths:
    ``PATH``, ``HOME``, ``TMPDIR``, ``IPYTHONDIR``, ``ETPO_DATA_DIR``, ``ETPO_OUT_DIR``)."""
    return {
        "PYTHONHASHSEED": str(seed % 2**32),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        # One BLAS thread: the kernel's CPU share bounds parallelism, and oversubscribed BLAS
        # threads only slow a fit down (and make timings noisy).
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@dataclass(frozen=True)
class LaunchSpec:
    """What the core asks of a new kernel.

    Attributes:
        seed: the episode seed (``PYTHONHASHSEED`` is ``env["PYTHONHASHSEED"]``).
        key: HMAC-SHA256 key (hex text) the kernel must sign its messages with.
        env: environment variables every kernel gets (:func:`kernel_environment`); the
            provisioner adds its own paths and nothing from the host's environment.
    """

    seed: int
    key: str
    env: Mapping[str, str]


@dataclass(frozen=True)
class Connection:
    """Where the host finds a launched kernel's sockets.

    Attributes:
        key: the HMAC key as bytes.
        socket_dir: host path of the directory holding the kernel's ipc socket files.
        sockets: file name in ``socket_dir`` of each of :data:`HOST_CHANNELS`.
        socket_uid: uid that must own the socket files (``None``: not checked). The core opens
            each socket without following symlinks and checks it is a socket of this uid.
        root: where ``socket_dir`` (an absolute path) starts: ``/`` for a host path, or
            ``/proc/PID/root`` for a kernel in a mount namespace of its own. ``root`` is
            trusted (a link the host made or the kernel's root); every component of
            ``socket_dir`` below it is opened without following symlinks.
    """

    key: bytes
    socket_dir: Path
    sockets: Mapping[str, str]
    socket_uid: int | None = None
    root: Path = Path("/")


@dataclass(frozen=True)
class KernelFacts:
    """How a kernel ended, as the host established it (never from anything the kernel sent).

    Attributes:
        exit_status: ``None`` while it runs; its exit status once it ended (negative: killed
            by that signal).
        oom_killed: the kernel's memory cgroup's OOM killer ended it.
    """

    exit_status: int | None
    oom_killed: bool = False


class Provisioner(abc.ABC):
    """One kernel, Popen-like. Made by :meth:`Backend.provisioner`, started by :meth:`launch`."""

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> Connection:
        """Start a fresh kernel for ``spec`` and return where its sockets will be.

        Returns once the kernel process is started; the socket files may appear later (the core
        waits for them, watching :meth:`poll`). On return, ``data_dir`` exists and is empty and
        ``out_dir`` exists, is empty and is writable by the kernel. Raises
        :class:`~etpo_gym.errors.SandboxError` (``KernelStartError``, ``EngineUnavailable``,
        ``ImageMissing``) when it cannot; whatever it made before failing is freed by
        :meth:`cleanup`, which the core always calls.
        """

    @property
    @abc.abstractmethod
    def data_dir(self) -> Path:
        """Host path of the kernel's input directory: the host writes it, the kernel reads it
        (read-only) at ``$ETPO_DATA_DIR``."""

    @property
    @abc.abstractmethod
    def out_dir(self) -> Path:
        """Host path of the kernel's output directory (``$ETPO_OUT_DIR`` inside)."""

    def open_out_dir(self) -> int:
        """A descriptor of ``out_dir`` opened without following a symlink at any component;
        the caller closes it. Raises ``OSError`` if the code replaced it by something else."""
        return open_dir_nofollow(self.out_dir)

    @abc.abstractmethod
    def poll(self) -> int | None:
        """``None`` while the kernel runs, else its exit status. Cheap: called every ~50 ms."""

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the kernel to end; its exit status or ``None``."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.poll()
            if status is not None or time.monotonic() >= deadline:
                return status
            time.sleep(0.01)

    @abc.abstractmethod
    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel process (not to the rest of its process tree)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """End the kernel and every process it started, now (SIGKILL or equivalent).

        Synchronous: on return, none of its processes runs code any more. Idempotent, safe from
        any thread, at any time (also before or during ``launch``).
        """

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Free everything this kernel holds (directories, container, volume). Called once after
        ``kill`` (possibly on another thread); idempotent; never follows a symlink the code
        planted and never raises because of what the code left behind."""

    @abc.abstractmethod
    def facts(self) -> KernelFacts:
        """How the kernel ended (exit status, OOM kill), from the host's own sources. May wait a
        little for the facts to settle after the kernel died."""

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the kernel's own log (its stdout and stderr), for error messages."""
        return ""

    def fit_to_keep(self) -> bool:
        """After an interrupted cell: whether the kernel may be kept (``False`` when, e.g., it
        left a swarm of processes behind). The default keeps it."""
        return True


class PathAliases:
    """Rewrites where the kernel's Python installation lies, which differs between machines and
    backends (a virtual environment in someone's home directory, ``/opt/venv`` in the image), to
    the same short forms everywhere: ``site-packages/...`` and ``python3.X/...`` (the standard
    library). Tracebacks then read alike on every machine and backend and name no host path.

    Args:
        site_dirs: regular expressions of site-packages directories (no trailing slash).
        stdlib_dirs: the same for standard library directories; their last path component
            (``python3.X``) is kept.

    Each expression must start with a literal path, so that rewriting stays linear in the text.
    """

    def __init__(self, site_dirs: Iterable[str] = (), stdlib_dirs: Iterable[str] = ()) -> None:
        site, stdlib = list(site_dirs), list(stdlib_dirs)
        # Site-packages first: it may lie inside a standard library directory.
        parts = [f"(?P<site>{'|'.join(site)})/"] if site else []
        parts += [f"(?P<stdlib>{'|'.join(stdlib)})/"] if stdlib else []
        self._pattern = re.compile("|".join(parts)) if parts else None

    @classmethod
    def of_paths(cls, paths: Mapping[str, str]) -> PathAliases:
        """Aliases for an interpreter's ``sysconfig.get_paths()``."""
        site = {paths[k].rstrip("/") for k in ("purelib", "platlib") if paths.get(k)}
        stdlib = {paths[k].rstrip("/") for k in ("stdlib", "platstdlib") if paths.get(k)}
        return cls(
            sorted((re.escape(d) for d in site), key=len, reverse=True),
            sorted((re.escape(d) for d in stdlib), key=len, reverse=True),
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None or "/" not in text:
            return text
        return self._pattern.sub(self._replace, text)

    @staticmethod
    def _replace(match: re.Match[str]) -> str:
        if match.lastgroup == "site":
            return "site-packages/"
        return match.group("stdlib").rsplit("/", 1)[-1] + "/"


class Backend(abc.ABC):
    """What the kernels of one sandbox share, and the factory of their provisioners."""

    #: short name (``"local"``, ``"docker"``), used in messages and ``info["sandbox"]``
    name: ClassVar[str] = "base"

    #: what :class:`PathAliases` rewrites in what the kernels print (after :meth:`open`)
    path_aliases: PathAliases = PathAliases()

    @property
    def isolation(self) -> str:
        """One of :data:`~etpo_gym.sandbox.base.ISOLATION_LEVELS`."""
        return "none"

    @abc.abstractmethod
    def open(self) -> None:
        """Get ready to launch kernels (idempotent): check the engine and image, make the root
        directory, reap what dead owners left. Raises ``SandboxError`` subclasses saying why
        not."""

    @abc.abstractmethod
    def provisioner(self) -> Provisioner:
        """A new, not yet launched provisioner (after :meth:`open`)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free what the kernels shared; called after every provisioner's ``cleanup``.
        Idempotent."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
