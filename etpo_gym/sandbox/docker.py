"""A Jupyter kernel in a locked-down Docker container, one fresh container per episode.

Each kernel lives in its own container ("box"), which no other episode ever uses:

* **no network** (``network_mode="none"``): the host reaches the kernel through ZMQ **ipc** sockets
  in a small, size-capped tmpfs volume mounted at ``/io`` (which also holds ``/io/out``, the
  predictions). Each socket is *pinned* before any agent code runs: opened with
  ``O_PATH|O_NOFOLLOW``, checked to be a socket owned by the kernel's uid, and connected through
  ``ipc:///proc/self/fd/N``, so that a symlink planted later cannot redirect the host anywhere;
* **locked down**: read-only root file system, size-capped tmpfs work dir (``/work``) and
  ``/tmp``, memory with swap equal to it, a data-segment limit just below it (a large allocation
  raises ``MemoryError`` as on the local backend; the cgroup is the backstop), pids limit, CPU
  limit, a uid that exists neither in the image nor on the host, ``cap_drop=ALL``,
  ``no-new-privileges``, ``nofile``/``core`` ulimits, capped logs, ``--init`` as PID 1;
* **inputs** are a host directory mounted read-only at ``/data``; the evaluation labels are never
  written there (the env keeps them on the host).

Episodes are isolated because ``reset`` always hands out a container in which no agent code has
run; the previous one is killed and removed with its volume. A small pool pre-starts containers
for the seeds announced by :meth:`DockerSandbox.prepare` (``PYTHONHASHSEED`` is fixed when the
interpreter starts), so that ``reset`` does not wait for a container to boot.

Failures within an episode escalate: an overrun cell is interrupted through the control channel;
if the kernel is not idle within ``interrupt_grace`` (or left a swarm of processes behind), the
kernel is restarted hard, which here means killing its container and swapping in a fresh one for
the same seed (with the same inputs): the kernel is the container's only process, so a hard
restart and a recreation are the same thing, and the stronger one is done. Kernel death (exit,
signal, out-of-memory kill) is detected from the container's init process and reported as
``killed`` or ``oom``; the next ``execute`` runs in a fresh container.

Every container and volume carries the label ``etpo-gym.sandbox`` plus its owner's pid, process
start time and host name; ``close()`` removes them, and :func:`reap_orphans` (run on the first
start in each process) removes those whose owner died without closing (``kill -9``).

The engine must run on this machine and this process must be able to read its volumes (root):
the ipc sockets are files in a volume under the engine's data root.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import queue
import re
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from etpo_gym.errors import ConfigError, SandboxError, SandboxUnavailable
from etpo_gym.sandbox import _kernel
from etpo_gym.sandbox.base import ExecResult, Sandbox, Status
from etpo_gym.sandbox.image import default_image
from etpo_gym.sandbox.local import SETUP_CODE, load_output, save_inputs

LABEL = "etpo-gym.sandbox"
LABEL_OWNER_PID = "etpo-gym.owner-pid"
LABEL_OWNER_START = "etpo-gym.owner-start"
LABEL_OWNER_HOST = "etpo-gym.owner-host"
LABEL_OWNER_PARENT = "etpo-gym.owner-parent"  # lets a test session find its workers' leftovers
LABEL_INSTANCE = "etpo-gym.instance"  # one DockerSandbox object
_DIR_PREFIX = "etpo-gym-docker-"
_DIR_NAME = re.compile(rf"^{re.escape(_DIR_PREFIX)}(\d+)-(\d+)-")

#: ZMQ channels and the ipc "ports" (socket file suffixes) the kernel binds them to.
CHANNELS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
IO_DIR, DATA_DIR, WORK_DIR = "/io", "/data", "/work"

# Runs as the container's command: writes the connection file into the io volume and starts the
# kernel in the same interpreter (no shell, nothing else in the container).
_BOOT = """\
import os, sys
os.umask(0o077)
os.mkdir("/io/out")
with open("/io/kernel.json", "w") as f:
    f.write(sys.argv[1])
sys.argv = ["ipykernel", "-f", "/io/kernel.json", "--HistoryManager.enabled=False",
            "--IPKernelApp.log_level=ERROR"]
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


# -- ownership and orphans ---------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot), or ``None`` if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


def _owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL: "1",
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: _start_time(pid) or "0",
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_OWNER_PARENT: str(os.getppid()),
    }


def _owner_dead(pid: int, start: str) -> bool:
    """Whether the owner process is gone (or its pid now belongs to another process)."""
    now = _start_time(pid)
    return now is None or (start not in ("0", now))


def _orphaned(labels: Mapping[str, str]) -> bool:
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return False  # another machine's (or container's) resources: not ours to judge
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True
    return _owner_dead(pid, labels.get(LABEL_OWNER_START, "0"))


def _connect_engine(timeout: int = 60) -> Any:
    """A Docker SDK client on a local engine, or :class:`SandboxUnavailable` saying why not."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxUnavailable(
            "the docker Python package is not installed (pip install docker)", backend="docker"
        ) from exc
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        raise SandboxUnavailable(
            f"DOCKER_HOST={host} is not a local unix socket: the sandbox talks to its kernels "
            "through socket files, so the engine must run on this machine",
            backend="docker",
        )
    address = host or "unix:///var/run/docker.sock"
    path = address.removeprefix("unix://")
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError as exc:
        is_socket, why = False, exc.strerror or type(exc).__name__
    else:
        why = "not a socket"
    if not is_socket:
        # Checked before docker-py is asked: its failed connect leaves a socket unclosed.
        raise SandboxUnavailable(
            f"the Docker engine does not answer ({address}): {path}: {why}", backend="docker"
        )
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SandboxUnavailable(
            f"the Docker engine does not answer ({address}): {first}", backend="docker"
        ) from exc
    return client


def docker_status(image: str | None = None) -> tuple[bool, str]:
    """Whether the Docker sandbox can run here (engine answers, image built, volumes readable),
    and why not."""
    image = image or default_image()
    try:
        client = _connect_engine(timeout=10)
    except SandboxUnavailable as exc:
        return False, str(exc).removeprefix("[docker] ")
    try:
        import docker.errors

        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return False, (
                f"the sandbox image {image} is not built: run `etpo-gym sandbox build` "
                "(or docker/build.sh)"
            )
        info = client.info()
        volumes = Path(info.get("DockerRootDir", "/var/lib/docker")) / "volumes"
        if os.geteuid() != 0 or not os.access(volumes, os.X_OK):
            return False, (
                f"this process (uid {os.geteuid()}) cannot reach the engine's volumes in {volumes}: "
                "the Docker sandbox reaches its kernels through socket files there; run as root"
            )
        return True, f"Docker engine {info.get('ServerVersion', '?')}, image {image}"
    except Exception as exc:
        return False, f"the Docker engine failed to answer a query: {exc}"
    finally:
        client.close()


def reap_orphans(client: Any = None) -> int:
    """Remove sandbox containers, volumes and host directories whose owner process died.

    Only resources labelled by this host are judged; those of live owners are left alone.
    Returns how many were removed.
    """
    import docker.errors

    own_client = client is None
    client = client or _connect_engine()
    removed = 0
    try:
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            if _orphaned(container.labels):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
                    removed += 1
        for volume in client.volumes.list(filters={"label": LABEL}):
            if _orphaned(volume.attrs.get("Labels") or {}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    volume.remove(force=True)
                    removed += 1
    finally:
        if own_client:
            client.close()
    for entry in Path(tempfile.gettempdir()).glob(_DIR_PREFIX + "*"):
        match = _DIR_NAME.match(entry.name)
        if match and _owner_dead(int(match.group(1)), match.group(2)):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def list_resources(
    owner_pid: int | None = None, parent_pid: int | None = None, instance: str | None = None
) -> list[str]:
    """Labelled sandbox containers and volumes, as ``"container NAME"`` / ``"volume NAME"``.

    With ``owner_pid``: those made by that process; with ``parent_pid``: by its child processes;
    with ``instance``: by the sandbox whose :attr:`DockerSandbox.instance` it is.
    """
    client = _connect_engine()
    selector = [LABEL]
    if instance is not None:
        selector.append(f"{LABEL_INSTANCE}={instance}")
    if owner_pid is not None:
        selector.append(f"{LABEL_OWNER_PID}={owner_pid}")
    if parent_pid is not None:
        selector.append(f"{LABEL_OWNER_PARENT}={parent_pid}")
    try:
        names = [
            f"container {c.name}"
            for c in client.containers.list(all=True, filters={"label": selector})
        ]
        names += [f"volume {v.name}" for v in client.volumes.list(filters={"label": selector})]
        return names
    finally:
        client.close()


_reaped = False
_reap_lock = threading.Lock()


def _reap_once(client: Any) -> None:
    global _reaped
    with _reap_lock:
        if not _reaped:
            _reaped = True
            reap_orphans(client)


# -- one container ("box") ---------------------------------------------------------------------


class _Tampered(SandboxError):
    pass


class _PinnedClient(BlockingKernelClient):
    """A kernel client whose channel URLs are fixed ``ipc:///proc/self/fd/N`` addresses."""

    def _make_url(self, channel: str) -> str:
        return self._pinned_urls[channel]  # type: ignore[attr-defined]


def _free_uid(first: int = 61000) -> int:
    """A uid (and gid) that names no user or group on this host."""
    users = {p.pw_uid for p in pwd.getpwall()}
    groups = {g.gr_gid for g in grp.getgrall()}
    for uid in range(first, first + 4000):
        if uid not in users and uid not in groups:
            return uid
    raise SandboxError(f"no free uid in {first}..{first + 3999} on this host", backend="docker")


@dataclass
class _Box:
    """One container running one kernel, with its io volume and pinned client."""

    name: str
    seed: int
    volume: Any = None
    container: Any = None
    io_dir: Path | None = None
    init_pid: int = 0
    init_start: str | None = None
    client: BlockingKernelClient | None = None
    fds: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        """Whether the container's init (hence its kernel) runs: a /proc look-up, no API call."""
        if not self.init_pid:
            return False
        return _start_time(self.init_pid) == self.init_start

    def kill(self) -> None:
        """SIGKILL the container's init from the host, which ends every process in the container
        (its PID namespace) at once; the engine's kill API when that is not possible."""
        with contextlib.suppress(OSError):  # no pidfd (gone, or no kernel support): below
            pidfd = os.pidfd_open(self.init_pid)
            try:
                # The pid names our init only if its start time still matches, checked after
                # the pidfd holds the process: no pid-reuse race.
                if self.alive():
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    return
            finally:
                os.close(pidfd)
        if self.container is not None and self.alive():
            with contextlib.suppress(Exception):
                self.container.kill()

    def close_client(self) -> None:
        client, self.client = self.client, None
        with contextlib.suppress(Exception):
            _kernel.close_client(client)
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _wait_execute_idle(client: BlockingKernelClient, timeout: float) -> bool:
    """After an interrupt: whether the interrupted *execute* request ends within ``timeout``.

    The control channel's ``interrupt_request`` has its own busy/idle pair on iopub; returning on
    that one would send the next cell while the interrupted one is still failing, and ipykernel
    then aborts it (stop-on-error) without running it.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            msg = client.get_iopub_msg(timeout=left)
        except queue.Empty:
            return False
        if (
            msg["msg_type"] == "status"
            and msg["content"].get("execution_state") == "idle"
            and msg.get("parent_header", {}).get("msg_type") == "execute_request"
        ):
            return True


# -- the sandbox -------------------------------------------------------------------------------


class DockerSandbox(Sandbox):
    """One Jupyter kernel per episode, each in a fresh locked-down container.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: container memory in bytes (swap equal to it, i.e. none); ``None``: 2 GiB.
        max_output_bytes: text kept per cell (stdout, stderr, results).
        image: sandbox image (default: ``etpo-gym-sandbox:<version>``, see ``etpo-gym sandbox build``).
        cpus: CPU limit of the container (fractions allowed).
        pids_limit: most processes/threads in the container (a fork bomb stops there).
        tmpfs_size: bytes of the ``/work`` and of the ``/tmp`` tmpfs each (counted in memory too).
        output_size: bytes of the io volume (sockets and predictions).
        pool_size: containers pre-started for announced seeds (0: start each on demand).
        uid: uid the kernel runs as; must name no user on the host (default: a free one >= 61000).
        startup_timeout: seconds a new container's kernel gets to answer.
        interrupt_grace: seconds an interrupted kernel gets to become idle before its container is
            replaced.
    """

    name = "docker"

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int | None = 2 * 2**30,
        max_output_bytes: int = 2**20,
        image: str | None = None,
        cpus: float = 1.0,
        pids_limit: int = 256,
        tmpfs_size: int = 256 * 2**20,
        output_size: int = 80 * 2**20,
        pool_size: int = 2,
        uid: int | None = None,
        startup_timeout: float = 60.0,
        interrupt_grace: float = 2.0,
    ) -> None:
        memory_limit = 2 * 2**30 if memory_limit is None else int(memory_limit)
        checks = [
            ("timeout", timeout, timeout is not None and timeout > 0, "a positive number of s"),
            ("memory_limit", memory_limit, memory_limit >= 512 * 2**20, "at least 512 MiB"),
            ("max_output_bytes", max_output_bytes, max_output_bytes > 0, "a positive integer"),
            ("cpus", cpus, 0 < cpus <= (os.cpu_count() or 1), f"in (0, {os.cpu_count()}]"),
            ("pids_limit", pids_limit, pids_limit >= 16, "an integer >= 16"),
            ("tmpfs_size", tmpfs_size, tmpfs_size >= 2**20, "at least 1 MiB"),
            ("output_size", output_size, output_size >= 2**20, "at least 1 MiB"),
            ("pool_size", pool_size, 0 <= pool_size <= 8, "an integer in 0..8"),
            ("startup_timeout", startup_timeout, startup_timeout > 0, "a positive number of s"),
            ("interrupt_grace", interrupt_grace, interrupt_grace > 0, "a positive number of s"),
        ]
        for name, value, ok, accepted in checks:
            if not ok:
                raise ConfigError(f"DockerSandbox {name}={value!r} is not accepted: use {accepted}")
        if uid is not None:
            known = True
            try:
                pwd.getpwuid(uid)
            except KeyError:
                known = False
            if uid <= 0 or known:
                raise ConfigError(
                    f"DockerSandbox uid={uid!r} is not accepted: use a positive uid that names no "
                    "user on this host (default: a free one from 61000)"
                )
        self.timeout = float(timeout)
        self.memory_limit = memory_limit
        self.max_output_bytes = int(max_output_bytes)
        self.image = image or default_image()
        self.cpus = float(cpus)
        self.pids_limit = int(pids_limit)
        self.tmpfs_size = int(tmpfs_size)
        self.output_size = int(output_size)
        self.pool_size = int(pool_size)
        self.uid = uid
        self.startup_timeout = float(startup_timeout)
        self.interrupt_grace = float(interrupt_grace)
        self.seed = 0
        self._root: Path | None = None
        self._box: _Box | None = None
        self._pool: list[tuple[int, Future[_Box]]] = []
        self._hint: int | None = None
        self._spare_for_current = False
        self._last_reset_seed: int | None = None
        self._starter: ThreadPoolExecutor | None = None
        self._janitor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._labels: dict[str, str] = {}
        #: label value that marks this sandbox's containers and volumes
        self.instance = secrets.token_hex(6)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def data_dir(self) -> Path:
        """Host directory mounted read-only at ``/data`` in every container of this sandbox."""
        if self._root is None:
            raise SandboxError("the sandbox is not started", backend=self.name)
        return self._root / "data"

    @property
    def container(self) -> Any:
        """The current episode's container (docker SDK object), or ``None``."""
        return None if self._box is None else self._box.container

    def start(self) -> None:
        self._ensure_started()
        if self._box is None:
            self._box = self._acquire(self.seed)
            self._top_up()

    def reset(self, seed: int | None = None) -> None:
        self._ensure_started()
        self.seed = 0 if seed is None else int(seed)
        # The same seed again (a protocol with several splits per step, a benchmark loop): keep a
        # spare for it too; a new seed (a new episode) needs none until it recurs or fails.
        self._spare_for_current = self._last_reset_seed == self.seed
        self._last_reset_seed = self.seed
        if self._hint == self.seed:
            self._hint = None  # used up; the env announces the next one after this reset
        if self._box is not None:
            self._retire(self._box, kill_now=True)
            self._box = None
        self._clear_data()
        self._box = self._acquire(self.seed)
        self._top_up()

    def prepare(self, seed: int) -> None:
        self._hint = int(seed)
        if self._starter is not None and not self._closed:
            self._top_up()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, []
        for _, future in pool:
            future.cancel()
        if self._starter is not None:
            self._starter.shutdown(wait=True, cancel_futures=True)
        boxes = [self._box] if self._box is not None else []
        self._box = None
        for _, future in pool:
            if future.done() and not future.cancelled() and future.exception() is None:
                boxes.append(future.result())
        if self._janitor is not None:
            self._janitor.shutdown(wait=True)
        errors = []
        for box in boxes:
            try:
                self._destroy(box)
            except Exception as exc:  # keep removing the others
                errors.append(str(exc))
        with self._clients_lock:
            for client in self._clients:
                with contextlib.suppress(Exception):
                    client.close()
            self._clients = []
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if errors:
            raise SandboxError(
                "could not remove every container", backend=self.name, detail="\n".join(errors)
            )

    def _ensure_started(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed", backend=self.name)
        if self._starter is not None:
            return
        client = self._docker()
        import docker.errors

        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"the sandbox image {self.image} is not built: run `etpo-gym sandbox build` "
                "(or docker/build.sh)",
                backend=self.name,
            ) from None
        except docker.errors.APIError as exc:
            raise SandboxUnavailable(f"the Docker engine failed: {exc}", backend=self.name) from exc
        _reap_once(client)
        if self.uid is None:
            self.uid = _free_uid()
        self._labels = {**_owner_labels(), LABEL_INSTANCE: self.instance}
        pid = os.getpid()
        self._root = Path(
            tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{pid}-{self._labels[LABEL_OWNER_START]}-")
        )
        # The kernel's uid reads the inputs through the bind mount; the parent stays private.
        (self._root / "data").mkdir(mode=0o755)
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="etpo-docker-pool")
        self._janitor = ThreadPoolExecutor(1, thread_name_prefix="etpo-docker-janitor")

    def _docker(self) -> Any:
        """This thread's Docker client (the SDK's HTTP session is not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = _connect_engine()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    # -- pool --------------------------------------------------------------------------------

    def _acquire(self, seed: int) -> _Box:
        """A started box for ``seed``: from the pool if one is (being) made, else made now."""
        for entry in list(self._pool):
            if entry[0] != seed:
                continue
            self._pool.remove(entry)
            try:
                box = entry[1].result(timeout=self.startup_timeout + 30)
            except Exception:
                break  # the background start failed: try once more here, and report that one
            if box.alive():
                return box
            self._retire(box)
            break
        return self._start_box(seed)

    def _top_up(self) -> None:
        """Pre-start boxes for the announced seed, and for the current one when it recurs."""
        if self._starter is None or self._closed or self.pool_size == 0:
            return
        wanted: list[int] = []
        if self._hint is not None:
            wanted.append(self._hint)
        if self._spare_for_current and self.seed not in wanted:
            wanted.append(self.seed)
        wanted = wanted[: self.pool_size]
        for entry in list(self._pool):
            if entry[0] not in wanted:
                self._pool.remove(entry)
                self._discard_future(entry[1])
        for seed in wanted:
            if not any(s == seed for s, _ in self._pool):
                self._pool.append((seed, self._starter.submit(self._start_box, seed)))

    def _discard_future(self, future: Future[_Box]) -> None:
        if future.cancel():
            return

        def discard(done: Future[_Box]) -> None:
            if done.exception() is None:
                self._retire(done.result())

        future.add_done_callback(discard)

    def _retire(self, box: _Box, kill_now: bool = False) -> None:
        """Stop talking to ``box`` now; remove its container and volume in the background."""
        box.close_client()
        if kill_now and box.container is not None and box.alive():
            # The next episode's inputs are written right after this: its kernel must be gone.
            box.kill()
        janitor = self._janitor
        if janitor is None or self._closed:
            self._destroy(box)
            return
        try:
            janitor.submit(self._destroy, box)
        except RuntimeError:  # shut down meanwhile
            self._destroy(box)

    def _destroy(self, box: _Box) -> None:
        """Remove the box's container and volume (idempotent)."""
        import docker.errors

        box.close_client()
        client = self._docker()
        if box.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(box.container.id, force=True)
            box.container = None
        if box.volume is not None:
            for attempt in range(20):
                try:
                    client.api.remove_volume(box.volume.name, force=True)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)  # "volume in use" until the container removal settles
            box.volume = None

    # -- starting a box ----------------------------------------------------------------------

    def _start_box(self, seed: int) -> _Box:
        """Create volume + container for ``seed`` and connect to its kernel (any thread)."""
        import docker.errors
        from docker.types import LogConfig, Ulimit

        assert self._root is not None and self.uid is not None
        client = self._docker()
        uid = self.uid
        box = _Box(name=f"etpo-gym-{os.getpid()}-{secrets.token_hex(5)}", seed=seed)
        key = secrets.token_hex(32)
        connection = {
            "transport": "ipc",
            "ip": f"{IO_DIR}/k",
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "",
            **{f"{channel}_port": port for channel, port in CHANNELS.items()},
        }
        environment = {
            "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": WORK_DIR,
            "TMPDIR": "/tmp",
            "IPYTHONDIR": "/tmp/.ipython",
            "PYTHONHASHSEED": str(seed % 2**32),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "ETPO_DATA_DIR": DATA_DIR,
            "ETPO_OUT_DIR": f"{IO_DIR}/out",
        }
        # A large allocation fails with MemoryError (like the local backend's address-space cap)
        # before the cgroup's OOM killer has to step in; the rest of the limit is for the
        # interpreter's code, libraries and tmpfs pages.
        data_limit = max(self.memory_limit - 256 * 2**20, self.memory_limit * 3 // 4)
        tmpfs_opts = f"size={self.tmpfs_size},uid={uid},gid={uid},mode=0700,nosuid,nodev"
        try:
            box.volume = client.volumes.create(
                name=box.name,
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={self.output_size},uid={uid},gid={uid},mode=0700,nosuid,nodev,noexec",
                },
                labels=self._labels,
            )
            box.container = client.containers.run(
                self.image,
                command=["python3", "-c", _BOOT, json.dumps(connection)],
                name=box.name,
                detach=True,
                labels=self._labels,
                init=True,
                user=f"{uid}:{uid}",
                network_mode="none",
                read_only=True,
                tmpfs={WORK_DIR: tmpfs_opts, "/tmp": tmpfs_opts},
                volumes={
                    box.name: {"bind": IO_DIR, "mode": "rw"},
                    str(self._root / "data"): {"bind": DATA_DIR, "mode": "ro"},
                },
                working_dir=WORK_DIR,
                environment=environment,
                hostname="sandbox",
                mem_limit=self.memory_limit,
                memswap_limit=self.memory_limit,
                pids_limit=self.pids_limit,
                nano_cpus=int(self.cpus * 1e9),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                ulimits=[
                    Ulimit(name="nofile", soft=1024, hard=1024),
                    Ulimit(name="core", soft=0, hard=0),
                    Ulimit(name="data", soft=data_limit, hard=data_limit),
                ],
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            )
            box.container.reload()
            box.init_pid = int(box.container.attrs["State"].get("Pid") or 0)
            box.init_start = _start_time(box.init_pid) if box.init_pid else None
            box.io_dir = Path(box.volume.attrs["Mountpoint"])
            self._connect(box, key)
        except BaseException as exc:
            log = self._logs(box)
            with contextlib.suppress(Exception):
                self._destroy(box)
            if isinstance(exc, SandboxError):
                if log and not exc.detail:
                    exc.detail = log
                raise
            if isinstance(exc, docker.errors.ImageNotFound):
                raise SandboxUnavailable(
                    f"the sandbox image {self.image} is missing: run `etpo-gym sandbox build`",
                    backend=self.name,
                ) from exc
            if isinstance(exc, docker.errors.DockerException | OSError):
                raise SandboxError(
                    f"the sandbox container failed to start: {exc}", backend=self.name, detail=log
                ) from exc
            raise
        return box

    def _logs(self, box: _Box) -> str:
        if box.container is None:
            return ""
        try:
            return box.container.logs(tail=30).decode(errors="replace")
        except Exception:
            return ""

    def _connect(self, box: _Box, key: str) -> None:
        """Pin the kernel's sockets, connect, handshake and run the set-up cell."""
        assert box.io_dir is not None
        deadline = time.monotonic() + self.startup_timeout
        dir_fd = os.open(box.io_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            urls = {}
            for channel, port in CHANNELS.items():
                fd = self._pin(box, dir_fd, f"k-{port}", deadline)
                box.fds.append(fd)
                urls[channel] = f"ipc:///proc/self/fd/{fd}"
        finally:
            os.close(dir_fd)
        context = zmq.Context()
        # A flood of output from the kernel drops the connection instead of host memory.
        context.setsockopt(zmq.MAXMSGSIZE, max(16 * 2**20, 4 * self.max_output_bytes))
        client = _PinnedClient(context=context)
        client.load_connection_info(
            {"transport": "ipc", "ip": "unused", "key": key, "signature_scheme": "hmac-sha256"}
        )
        client._pinned_urls = urls  # type: ignore[attr-defined]
        box.client = client
        client.start_channels(hb=False)
        self._handshake(box, deadline)
        setup = _kernel.run_cell(
            client,
            SETUP_CODE.format(seed=box.seed),
            max(1.0, deadline - time.monotonic()),
            box.alive,
        )
        if not setup.ok:
            raise SandboxError(
                "the kernel in the container could not import numpy/pandas/scikit-learn "
                f"({setup.status}): is {self.image} an etpo-gym sandbox image?",
                backend=self.name,
                detail=setup.error + "\n" + setup.traceback,
            )

    def _pin(self, box: _Box, dir_fd: int, name: str, deadline: float) -> int:
        """Wait for socket ``name`` and hold it by an ``O_PATH`` descriptor."""
        while True:
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
                break
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _Tampered(
                    f"kernel socket {name} is not a plain socket ({exc})", backend=self.name
                ) from None
            if not box.alive():
                raise SandboxError(
                    "the kernel's container exited during start-up", backend=self.name
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the kernel did not open its sockets within {self.startup_timeout:g} s "
                    f"(looked in {box.io_dir}: is this process in the engine's mount namespace?)",
                    backend=self.name,
                )
            time.sleep(0.01)
        info = os.fstat(fd)
        if stat.S_ISLNK(info.st_mode):  # O_PATH|O_NOFOLLOW opens the link itself
            os.close(fd)
            raise _Tampered(f"kernel socket {name} is a symbolic link", backend=self.name)
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != self.uid:
            os.close(fd)
            raise _Tampered(
                f"kernel socket {name} is not a socket owned by uid {self.uid}", backend=self.name
            )
        return fd

    def _handshake(self, box: _Box, deadline: float) -> None:
        """``kernel_info`` until the shell answers and iopub delivers (its subscription is late)."""
        assert box.client is not None
        client = box.client
        while True:
            client.kernel_info()
            try:
                reply = client.get_shell_msg(timeout=0.25)
            except queue.Empty:
                reply = None
            if reply is not None and reply.get("msg_type") == "kernel_info_reply":
                try:
                    client.get_iopub_msg(timeout=0.25)
                    break
                except queue.Empty:
                    pass
            if not box.alive():
                raise SandboxError(
                    "the kernel's container exited during start-up", backend=self.name
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the kernel did not answer within {self.startup_timeout:g} s",
                    backend=self.name,
                )
        while True:  # drop the status messages of the handshake
            try:
                client.get_iopub_msg(timeout=0.02)
            except queue.Empty:
                break

    # -- data --------------------------------------------------------------------------------

    def _clear_data(self) -> None:
        for entry in self.data_dir.iterdir():
            entry.unlink()

    def put_data(self, arrays: Mapping[str, Any]) -> None:
        if self._root is None:
            self.start()
        self._clear_data()
        save_inputs(self.data_dir, arrays)

    def read_output(self, name: str, max_bytes: int = 64 * 2**20) -> np.ndarray:
        box = self._current()
        assert box.io_dir is not None
        try:
            return load_output(box.io_dir / "out", name, max_bytes)
        except (FileNotFoundError, ValueError):
            raise
        except OSError as exc:  # e.g. the code replaced the output directory by a symlink
            raise ValueError(f"cannot read {name} from the output directory: {exc}") from None

    def clear_output(self) -> None:
        """Remove everything from the output directory."""
        box = self._current()
        assert box.io_dir is not None
        out = box.io_dir / "out"
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        out.mkdir(mode=0o700)
        # A process the code left behind may have swapped in a symlink meanwhile: never follow it.
        os.chown(out, self.uid or 0, self.uid or 0, follow_symlinks=False)

    # -- execution ---------------------------------------------------------------------------

    def _current(self) -> _Box:
        if self._closed:
            raise SandboxError("the sandbox is closed", backend=self.name)
        if self._box is None:
            self.start()
        assert self._box is not None
        return self._box

    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        box = self._current()
        assert box.client is not None
        limit = self.timeout if timeout is None else float(timeout)
        try:
            result = _kernel.run_cell(
                box.client, code, limit, box.alive, max_output_bytes=self.max_output_bytes
            )
        except Exception as exc:  # the connection itself broke: not the code's fault
            self._replace()
            raise SandboxError(
                f"lost the connection to the kernel: {type(exc).__name__}: {exc}", backend=self.name
            ) from exc
        if result.status is Status.TIMEOUT and "TimeoutError" in result.error:
            if not self._interrupt(box):
                self._replace()
                result.restarted = True
        elif result.status is Status.KILLED:
            oom, detail = self._death_cause(box)
            if oom:
                result.status = Status.OOM
                result.error = (
                    "MemoryError: the kernel was killed for exceeding the memory limit of "
                    f"{self.memory_limit // 2**20} MiB"
                )
            elif detail:
                result.error += f" ({detail})"
            self._replace()
            result.restarted = True
        return result

    def _interrupt(self, box: _Box) -> bool:
        """Interrupt through the control channel; whether the kernel is usable afterwards."""
        assert box.client is not None
        msg = box.client.session.msg("interrupt_request", content={})
        box.client.control_channel.send(msg)
        if not (box.alive() and _wait_execute_idle(box.client, self.interrupt_grace)):
            return False
        # Processes the code left running (a fork bomb, busy children) would haunt the next step.
        return self._process_count(box) <= max(8, self.pids_limit // 4)

    def _process_count(self, box: _Box) -> int:
        try:
            return len(box.container.top(ps_args="-e -o pid").get("Processes") or [])
        except Exception:
            return 0

    def _death_cause(self, box: _Box) -> tuple[bool, str]:
        """(killed by the OOM killer, "exit status N") of a box whose kernel died."""
        container = box.container
        if container is None:
            return False, ""
        with contextlib.suppress(Exception):
            container.wait(timeout=5)
        try:
            container.reload()
        except Exception as exc:
            return False, f"container state unknown: {exc}"
        state = container.attrs.get("State", {})
        return bool(state.get("OOMKilled")), f"exit status {state.get('ExitCode')}"

    def _replace(self) -> None:
        """Swap the current box for a fresh one with the same seed (and the same inputs)."""
        old, self._box = self._box, None
        if old is not None:
            self._retire(old, kill_now=True)
        self._spare_for_current = True
        self._box = self._acquire(self.seed)
        self._top_up()
