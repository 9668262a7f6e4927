"""A real ``ipykernel`` process on this machine, driven through ``jupyter_client``.

This is the embedded default: it needs no Docker. Each kernel is started by
:mod:`etpo_gym.sandbox.confine` at one of two isolation levels (``isolation``, reported as
``sandbox.isolation``):

* ``"namespaces"`` (the default where bubblewrap works): mount, pid, network, ipc and uts
  namespaces; a read-only view of the system and of the Python environment only (no home
  directories, no repository, no Docker socket, no other sandbox, no package sources, no
  scikit-learn bundled data); writable places are size-capped tmpfs mounts that vanish with the
  kernel; loopback only; every process the kernel starts dies with it.
* ``"none"``: a plain process in a private directory (``data/`` read-only inputs, ``out/``
  predictions, ``work/`` the working directory and ``HOME``, ``conn/`` the connection file and
  ZMQ **ipc** sockets). It does not hide the host's file system from the code.

At both levels: as root the kernel runs as a fresh uid that names no user, without capabilities;
a cgroup (or rlimits) caps the memory and processes of the kernel *and its children*; rlimits cap
each process's address space (a memory bomb raises ``MemoryError``) and file size; the
environment is scrubbed (``PYTHONHASHSEED`` set to the episode seed); no TCP port is opened; the
kernel dies with its owner (``PR_SET_PDEATHSIG``); ``reset``/``close`` kill every process the
kernel started; and the owning process is non-dumpable, so the kernel cannot read its memory
(where the hidden labels live). Directories are removed without following any symlink the code
planted, and those of owners that died are reaped at the next start.

For untrusted code without bubblewrap, use ``sandbox="docker"``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.sandbox import _kernel, cgroup, confine, scratch
from etpo_gym.sandbox.base import ExecResult, Sandbox, Status

_PREFIX = "etpo-gym-local-"

#: Environment variables copied from the host into the kernel (nothing else is).
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")

SETUP_CODE = """\
import random as _r, numpy as _np
_r.seed({seed}); _np.random.seed({seed})
import pandas as _pd, sklearn as _sk
del _r, _np, _pd, _sk
"""


def protect_host_memory() -> None:
    """Make this process non-dumpable (see :func:`etpo_gym.sandbox.confine.protect_process_memory`)."""
    confine.protect_process_memory()


def reap_stale_dirs(tmp: str | None = None) -> int:
    """Remove sandbox directories left by owners that died (kill -9). Returns how many."""
    return scratch.reap_stale(_PREFIX, tmp)


def _remove_tree(path: Path) -> None:
    """Delete ``path`` whatever the code did to it; never follows a symlink, never raises."""
    scratch.remove_tree(path)


def save_inputs(directory: Path, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as ``NAME.npy`` (arrays) or ``NAME.pkl`` (DataFrame/Series), read-only."""
    for name, value in arrays.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"data name {name!r} must be a Python identifier")
        if isinstance(value, pd.DataFrame | pd.Series):
            target = directory / f"{name}.pkl"
            value.to_pickle(target)
        else:
            target = directory / f"{name}.npy"
            array = np.asarray(value)
            if array.dtype == object:
                raise ConfigError(f"data {name!r}: object arrays are not accepted; use a DataFrame")
            np.save(target, array, allow_pickle=False)
        target.chmod(0o444)


def load_output(directory: Path, name: str, max_bytes: int) -> np.ndarray:
    """Read ``directory/name`` written by untrusted code: no symlinks (at either level), regular
    file, at most ``max_bytes``, no pickles."""
    if "/" in name or name.startswith("."):
        raise ValueError(f"output name {name!r} must be a plain file name")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symlink
                raise ValueError(f"{name} is a symbolic link; write a regular file") from None
            raise FileNotFoundError(f"the code wrote no {name}") from None
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > max_bytes:
            raise ValueError(f"{name} is {info.st_size} bytes; the limit is {max_bytes}")
        try:
            return np.load(fh, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{name} is not a plain numeric .npy array: {exc}") from None


class _Kernel:
    """One confined kernel process and its host directory under the sandbox root.

    At ``"none"`` the directory holds ``data/ out/ work/ conn/``; at ``"namespaces"`` only
    ``data/`` (the rest are tmpfs mounts inside the kernel's namespaces, reached through
    :meth:`Confined.host_path <etpo_gym.sandbox.confine.Confined.host_path>`).

    ``spawn`` forks the process in the calling thread (the kernel's parent-death signal follows
    that thread, so it must be a long-lived one); ``wait`` blocks until it answers and has run the
    set-up cell, and may run in a helper thread.
    """

    def __init__(self, sandbox: LocalSandbox, directory: Path, seed: int) -> None:
        self.sandbox = sandbox
        self.dir = directory
        self.seed = seed
        self.proc: confine.Confined | None = None
        self.client: BlockingKernelClient | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.cancelled = threading.Event()
        plain = sandbox.isolation == "none"
        # As root, the kernel's own uid must reach its directories (and no other kernel's).
        directory.mkdir(mode=0o711 if plain and os.geteuid() == 0 else 0o700)
        (directory / "data").mkdir(mode=0o755)
        if plain:
            for sub in ("out", "work", "conn"):
                (directory / sub).mkdir(mode=0o700)
            self.layout = confine.Layout(
                data=str(directory / "data"),
                out=str(directory / "out"),
                work=str(directory / "work"),
                conn=str(directory / "conn"),
                tmp=str(directory / "work"),
            )
        else:
            self.layout = confine.namespaces_layout()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def host_path(self, inside: str) -> Path:
        if self.proc is None:
            raise SandboxError("the kernel is not started", backend=self.sandbox.name)
        return self.proc.host_path(inside)

    def spawn(self) -> None:
        sb = self.sandbox
        layout = self.layout
        if sb.isolation == "none":
            conn_fd = os.open(layout.conn, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                for entry in os.listdir(conn_fd):
                    scratch.remove_tree(os.path.join(layout.conn, entry))
            finally:
                os.close(conn_fd)
        key = secrets.token_hex(32)
        ports = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
        info = {"transport": "ipc", "key": key, "signature_scheme": "hmac-sha256", **ports}
        connection_file = f"{layout.conn}/kernel.json"
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(
            HOME=layout.work,
            TMPDIR=layout.tmp,
            IPYTHONDIR=f"{layout.conn}/ipython",
            PYTHONHASHSEED=str(self.seed % 2**32),
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",
            MPLBACKEND="Agg",
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            ETPO_DATA_DIR=layout.data,
            ETPO_OUT_DIR=layout.out,
        )
        spec = confine.Spec(
            argv=[
                sb.python,
                "-m",
                "ipykernel_launcher",
                "-f",
                connection_file,
                "--HistoryManager.enabled=False",
                "--IPKernelApp.log_level=ERROR",
            ],
            env=env,
            cwd=layout.work,
            log_path=self.dir / "kernel.log",
            data_dir=self.dir / "data",
            files={connection_file: json.dumps({**info, "ip": f"{layout.conn}/k"}).encode()},
            writable=[Path(layout.out), Path(layout.work), Path(layout.conn)],
        )
        try:
            self.proc = confine.Confined(spec, sb.limits, sb.isolation, python=sb.python)
        except OSError as exc:
            raise SandboxError(f"cannot start the kernel: {exc}", backend=sb.name) from exc
        context = zmq.Context()
        # A flood of output from the kernel drops the connection instead of host memory.
        context.setsockopt(zmq.MAXMSGSIZE, max(16 * 2**20, 4 * sb.max_output_bytes))
        self.client = BlockingKernelClient(context=context)
        self.client.load_connection_info({**info, "ip": f"{self.host_path(layout.conn)}/k"})
        self.client.start_channels()

    def wait(self) -> None:
        """Block until the kernel answers and has seeded itself; kill it and raise if not."""
        assert self.client is not None
        sb = self.sandbox
        try:
            deadline = time.monotonic() + sb.startup_timeout
            while True:
                if self.cancelled.is_set():
                    raise SandboxError("kernel start cancelled", backend=sb.name)
                if not self.alive():
                    raise SandboxError(
                        "the kernel exited during start-up", backend=sb.name, detail=self.log_tail()
                    )
                try:
                    self.client.wait_for_ready(timeout=min(0.1, deadline - time.monotonic()))
                    break
                except RuntimeError:
                    if time.monotonic() >= deadline:
                        raise SandboxError(
                            f"the kernel did not answer within {sb.startup_timeout:g} s",
                            backend=sb.name,
                            detail=self.log_tail(),
                        ) from None
            setup = _kernel.run_cell(
                self.client, SETUP_CODE.format(seed=self.seed), sb.startup_timeout, self.alive
            )
            if not setup.ok:
                raise SandboxError(
                    "the kernel could not import numpy/pandas/scikit-learn",
                    backend=sb.name,
                    detail=setup.error + "\n" + setup.traceback,
                )
        except BaseException:
            self.kill()
            raise

    def wait_in_background(self) -> None:
        def target() -> None:
            try:
                self.wait()
            except BaseException as exc:  # handed to the thread that adopts this kernel
                self.error = exc

        self.thread = threading.Thread(target=target, name="etpo-gym-kernel-start", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def restart(self) -> None:
        """Kill and relaunch in the same directory (the data stays)."""
        self.kill()
        self.spawn()
        self.wait()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.dir / "kernel.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """End the kernel and every process it started; free its cgroup."""
        _kernel.close_client(self.client)
        self.client = None
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.close()

    def destroy(self) -> None:
        if self.thread is not None:
            # Stop a start still in progress: the helper thread notices within ~0.1 s.
            self.cancelled.set()
            if self.proc is not None:
                self.proc.kill()
            self.thread.join()
            self.thread = None
        self.kill()
        _remove_tree(self.dir)


class LocalSandbox(Sandbox):
    """One ``ipykernel`` process on this machine.

    ``prepare(seed)`` starts the next episode's kernel in the background (a pool of one), so that
    ``reset(seed)`` with that seed only swaps kernels.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: memory cap in bytes of each kernel process (address space: a larger
            allocation raises ``MemoryError``) and of the kernel with all its children (cgroup,
            where one can be made). ``None``: no cap.
        max_output_bytes: text kept per cell (stdout, stderr, results).
        startup_timeout: seconds to wait for a new kernel to answer.
        interrupt_grace: seconds an interrupted kernel gets to become idle before a hard restart.
        python: interpreter that runs the kernel (default: this one; needs ``ipykernel``).
        isolation: ``"auto"`` (``"namespaces"`` where bubblewrap works, else ``"none"`` with one
            warning saying why), ``"namespaces"`` (an error where it cannot work) or ``"none"``.
        pids_limit: most processes/threads of the kernel and its children (a fork bomb stops
            there).
        tmpfs_size: bytes of each writable tmpfs at ``"namespaces"`` (``/tmp``, ``/dev/shm``,
            the work and output directories), and the largest file any process may write.
        protect_host: make the owning process non-dumpable (see module docstring).
        prestart: honour ``prepare(seed)`` by starting the next kernel in the background.
    """

    name = "local"

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
        prestart: bool = True,
    ) -> None:
        if not timeout or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} must be a positive number of seconds")
        if memory_limit is not None and memory_limit < 256 * 2**20:
            raise ConfigError(f"memory_limit={memory_limit!r} bytes is below the 256 MiB minimum")
        if max_output_bytes <= 0:
            raise ConfigError(f"max_output_bytes={max_output_bytes!r} must be positive")
        self.timeout = float(timeout)
        self.memory_limit = memory_limit
        self.max_output_bytes = int(max_output_bytes)
        self.startup_timeout = float(startup_timeout)
        self.interrupt_grace = float(interrupt_grace)
        self.python = python or sys.executable
        if tmpfs_size < 2**20:
            raise ConfigError(f"tmpfs_size={tmpfs_size!r} bytes is below the 1 MiB minimum")
        if not isinstance(pids_limit, int) or pids_limit < 16:
            raise ConfigError(f"pids_limit={pids_limit!r} must be an integer >= 16")
        self.limits = confine.Limits(
            memory_bytes=memory_limit,
            pids=pids_limit,
            file_bytes=int(tmpfs_size),
            tmpfs_bytes=int(tmpfs_size),
        )
        #: ``"namespaces"`` or ``"none"``: what separates the code from the host.
        self.isolation = confine.resolve_isolation(isolation, self.python)
        self.protect_host = protect_host
        self.prestart = prestart
        self._root: Path | None = None
        self._kernel: _Kernel | None = None
        self._spare: _Kernel | None = None
        self._count = 0
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def root(self) -> Path:
        if self._root is None:
            raise SandboxError("the sandbox is not started", backend=self.name)
        return self._root

    @property
    def _current(self) -> _Kernel:
        if self._kernel is None:
            raise SandboxError("the sandbox is not started", backend=self.name)
        return self._kernel

    @property
    def data_dir(self) -> Path:
        return self._current.dir / "data"

    @property
    def out_dir(self) -> Path:
        """Host path of the output directory (at ``"namespaces"``: valid while the kernel runs)."""
        kernel = self._current
        return kernel.host_path(kernel.layout.out)

    @property
    def seed(self) -> int:
        return self._current.seed

    @property
    def kernel_pid(self) -> int | None:
        """Host pid of the current kernel process."""
        kernel = self._kernel
        return None if kernel is None or kernel.proc is None else kernel.proc.pid

    def start(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed", backend=self.name)
        if self._kernel is not None:
            return
        reap_stale_dirs()
        cgroup.reap_stale()
        if self.protect_host:
            protect_host_memory()
        self._root = scratch.make_private_dir(_PREFIX)
        if self.isolation == "none" and os.geteuid() == 0:
            self._root.chmod(0o711)  # the kernel's uid passes through to its own directory only
        self._kernel = self._new_kernel(0)
        self._kernel.wait()

    def _new_kernel(self, seed: int) -> _Kernel:
        self._count += 1
        kernel = _Kernel(self, self.root / f"k{self._count}", seed)
        try:
            kernel.spawn()
        except BaseException:
            kernel.destroy()
            raise
        return kernel

    def prepare(self, seed: int) -> None:
        if not self.prestart or self._closed or self._root is None:
            return
        if self._spare is not None:
            if self._spare.seed == seed:
                return
            self._spare.destroy()
        self._spare = self._new_kernel(int(seed))
        self._spare.wait_in_background()

    def reset(self, seed: int | None = None) -> None:
        if self._kernel is None:
            self.start()
        seed = 0 if seed is None else int(seed)
        spare, self._spare = self._spare, None
        old, self._kernel = self._kernel, None
        if old is not None:
            old.destroy()
        if spare is not None and spare.seed == seed:
            try:
                spare.join()
            except SandboxError:
                spare.destroy()
            else:
                self._kernel = spare
                return
        elif spare is not None:
            spare.destroy()
        kernel = self._new_kernel(seed)
        try:
            kernel.wait()
        except BaseException:
            kernel.destroy()
            raise
        self._kernel = kernel

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for kernel in (self._spare, self._kernel):
            if kernel is not None:
                kernel.destroy()
        self._spare = self._kernel = None
        if self._root is not None:
            _remove_tree(self._root)
            self._root = None

    # -- data --------------------------------------------------------------------------------

    def put_data(self, arrays: Mapping[str, Any]) -> None:
        data = self.data_dir
        for entry in data.iterdir():
            entry.unlink()
        save_inputs(data, arrays)

    def read_output(self, name: str, max_bytes: int = 64 * 2**20) -> np.ndarray:
        return load_output(self.out_dir, name, max_bytes)

    # -- execution ---------------------------------------------------------------------------

    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        if self._kernel is None:
            self.start()
        kernel = self._current
        assert kernel.client is not None
        limit = self.timeout if timeout is None else float(timeout)
        result = _kernel.run_cell(
            kernel.client, code, limit, kernel.alive, max_output_bytes=self.max_output_bytes
        )
        if result.status is Status.TIMEOUT and "TimeoutError" in result.error:
            result.restarted = not self._interrupt(kernel)
        elif result.status is Status.KILLED:
            exit_code = None if kernel.proc is None else kernel.proc.poll()
            if exit_code is not None:
                result.error += f" (exit status {exit_code})"
            if kernel.proc is not None and kernel.proc.oom_killed():
                result.status = Status.OOM
                result.error = "MemoryError: the kernel was killed at the memory cap"
            kernel.restart()
            result.restarted = True
        return result

    def _interrupt(self, kernel: _Kernel) -> bool:
        """SIGINT the kernel; if it is not idle within the grace period, restart it hard.
        Returns whether the kernel survived (state kept)."""
        assert kernel.proc is not None and kernel.client is not None
        kernel.proc.send_signal(signal.SIGINT)
        if kernel.alive() and _kernel.wait_idle(kernel.client, self.interrupt_grace):
            return True
        kernel.restart()
        return False
