"""A real ``ipykernel`` process on this machine: the embedded default, no Docker needed.

Isolation level ``"none"``: the kernel is a plain process of this user and **can read the host's
files**; results produced with it say so (``info["isolation"]``). What it does get, where it
costs nothing:

* a private directory per kernel (``data/`` inputs, ``out/`` predictions, ``work/`` the working
  directory, ``HOME`` and ``TMPDIR``, ``conn/`` the connection file and ZMQ **ipc** sockets — no
  TCP port is opened);
* a scrubbed environment (no host variables leak in), ``PYTHONHASHSEED`` set to the episode seed;
* an address-space cap (``memory_limit``) so that a memory bomb raises ``MemoryError``;
* the kernel dies with its owner (``PR_SET_PDEATHSIG``), runs in its own session, and the whole
  process group is killed with it; as root it runs without any capability
  (``setpriv --bounding-set=-all``);
* the owning process marks itself non-dumpable, so the kernel cannot read its memory (where the
  hidden labels live) through ``/proc/PID/mem`` or ptrace.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from etpo_gym.errors import ConfigError, KernelStartError, SandboxError
from etpo_gym.sandbox.files import remove_tree
from etpo_gym.sandbox.kernel import KernelSandbox
from etpo_gym.sandbox.provisioner import (
    HOST_CHANNELS,
    IPC_PORTS,
    KERNEL_ARGS,
    Backend,
    Connection,
    KernelFacts,
    LaunchSpec,
    Provisioner,
    connection_info,
    pid_alive,
)

_PREFIX = "etpo-gym-local-"
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_DIR_NAME = re.compile(rf"^{re.escape(_PREFIX)}(\d+)-")

#: Environment variables copied from the host into the kernel (nothing else is).
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def protect_host_memory() -> None:
    """Make this process non-dumpable: processes without CAP_SYS_PTRACE (our kernels) cannot read
    its memory via /proc/PID/mem or attach to it. Side effect: no core dumps, no debugger attach
    by ordinary users."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def reap_stale_dirs(tmp: str | None = None) -> int:
    """Remove sandbox directories left by owners that died (kill -9). Returns how many."""
    base = Path(tmp or tempfile.gettempdir())
    removed = 0
    for entry in base.glob(_PREFIX + "*"):
        match = _DIR_NAME.match(entry.name)
        if match and not pid_alive(int(match.group(1))):
            remove_tree(entry)
            removed += 1
    return removed


class LocalBackend(Backend):
    """Kernels as child processes, each in its own directory under one root."""

    name = "local"

    def __init__(
        self,
        memory_limit: int | None = 4 * 2**30,
        python: str | None = None,
        drop_capabilities: bool = True,
        protect_host: bool = True,
    ) -> None:
        if memory_limit is not None and memory_limit < 256 * 2**20:
            raise ConfigError(f"memory_limit={memory_limit!r} bytes is below the 256 MiB minimum")
        self.memory_limit = memory_limit
        self.python = python or sys.executable
        self.drop_capabilities = drop_capabilities
        self.protect_host = protect_host
        self.root: Path | None = None
        self._count = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        if self.root is not None:
            return
        reap_stale_dirs()
        if self.protect_host:
            protect_host_memory()
        # Resolved once here (host-made, trusted), so paths below it can be opened O_NOFOLLOW.
        self.root = Path(os.path.realpath(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")))

    def provisioner(self) -> LocalProvisioner:
        if self.root is None:
            raise SandboxError("the local backend is not open", backend=self.name)
        with self._lock:
            self._count += 1
            directory = self.root / f"k{self._count}"
        return LocalProvisioner(self, directory)

    def close(self) -> None:
        root, self.root = self.root, None
        if root is not None:
            remove_tree(root)

    def command(self, connection_file: str) -> list[str]:
        """The kernel's command line."""
        cmd = [self.python, "-m", "ipykernel_launcher", "-f", connection_file, *KERNEL_ARGS]
        if self.drop_capabilities and os.geteuid() == 0 and shutil.which("setpriv"):
            cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", *cmd]
        return cmd


class LocalProvisioner(Provisioner):
    """One kernel process in ``directory`` (``data/ out/ work/ conn/``)."""

    def __init__(self, backend: LocalBackend, directory: Path) -> None:
        self.backend = backend
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._killed = False

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def out_dir(self) -> Path:
        return self.dir / "out"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def launch(self, spec: LaunchSpec) -> Connection:
        self.dir.mkdir(mode=0o700)
        for sub in ("data", "out", "work", "conn"):
            (self.dir / sub).mkdir(mode=0o700)
        conn = self.dir / "conn"
        connection_file = conn / "kernel.json"
        connection_file.write_text(json.dumps(connection_info(spec.key, str(conn / "k"))))
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(spec.env)
        work = str(self.dir / "work")
        env.update(
            HOME=work,
            TMPDIR=work,
            IPYTHONDIR=str(conn / "ipython"),
            ETPO_DATA_DIR=str(self.data_dir),
            ETPO_OUT_DIR=str(self.out_dir),
        )
        with open(self.dir / "kernel.log", "wb") as log, self._lock:
            if self._killed:
                raise KernelStartError("kernel start cancelled", backend=self.backend.name)
            try:
                self.proc = subprocess.Popen(
                    self.backend.command(str(connection_file)),
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=self._preexec,
                )
            except OSError as exc:
                raise KernelStartError(
                    f"cannot start the kernel: {exc}", backend=self.backend.name
                ) from exc
        return Connection(
            key=spec.key.encode(),
            socket_dir=conn,
            sockets={ch: f"k-{IPC_PORTS[ch]}" for ch in HOST_CHANNELS},
            socket_uid=os.geteuid(),
        )

    def _preexec(self) -> None:  # runs in the child between fork and exec
        limit = self.backend.memory_limit
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        libc = _libc()
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            proc = self.proc
        if proc is None:
            return
        # The kernel leads its own session and process group: what it started goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.kill()
        remove_tree(self.dir)

    def facts(self) -> KernelFacts:
        return KernelFacts(exit_status=self.poll())

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.dir / "kernel.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - max_bytes))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def fit_to_keep(self) -> bool:
        """Not when the code left other processes running in the kernel's session."""
        if self.proc is None:
            return False
        sid = self.proc.pid
        count = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 4 and fields[4] == str(sid).encode():
                count += 1
        return count <= 1


class LocalSandbox(KernelSandbox):
    """:class:`KernelSandbox` over :class:`LocalBackend`: ``ipykernel`` processes on this machine.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: address-space cap of the kernel process in bytes (``None``: no cap).
        max_output_bytes: output kept per cell (stdout, stderr, results), in bytes.
        startup_timeout: seconds to wait for a new kernel to answer.
        interrupt_grace: seconds an interrupted kernel gets to become idle before a hard restart.
        python: interpreter that runs the kernel (default: this one; needs ``ipykernel``).
        drop_capabilities: when running as root, run the kernel with no capabilities.
        protect_host: make the owning process non-dumpable (see the module docstring).
        pool_size: kernels pre-started for announced seeds (0: none).
    """

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int | None = 4 * 2**30,
        max_output_bytes: int = 2**20,
        startup_timeout: float = 60.0,
        interrupt_grace: float = 2.0,
        python: str | None = None,
        drop_capabilities: bool = True,
        protect_host: bool = True,
        pool_size: int = 2,
    ) -> None:
        backend = LocalBackend(memory_limit, python, drop_capabilities, protect_host)
        super().__init__(
            backend,
            timeout=timeout,
            max_output_bytes=max_output_bytes,
            startup_timeout=startup_timeout,
            interrupt_grace=interrupt_grace,
            pool_size=pool_size,
        )

    @property
    def root(self) -> Path:
        """The directory holding every kernel's directory."""
        root = self.backend.root  # type: ignore[attr-defined]
        if root is None:
            raise SandboxError("the sandbox is not started", backend=self.name)
        return root

    @property
    def kernel_pid(self) -> int | None:
        """Process id of the current kernel."""
        provisioner = self.provisioner
        return provisioner.pid if isinstance(provisioner, LocalProvisioner) else None
