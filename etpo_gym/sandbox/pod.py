"""One long-lived sandbox container (a "pod"), seen from the host.

A pod is a locked-down container whose only process, under the engine's init, is the supervisor
of ``container/supervisor.py``: it forks one fresh kernel at a time from an interpreter that has
imported the heavy modules, and wipes the container between kernels (see its docstring for what
a wipe proves). This module starts a pod, talks to its supervisor and ends it:

* **owner**: before the container starts, the host listens on a ``SOCK_SEQPACKET`` socket in a
  root-only host directory mounted at ``/ctl``; the supervisor connects to it and receives this
  process's pidfd. When this process dies (even by ``SIGKILL``), the pidfd says so at once, and
  the supervisor exits; the container ends with it and the engine removes it and its anonymous
  volumes (``auto_remove``). A pod also ends when its hard lifetime cap passes;
* **facts from the host**: a kernel's end is a pidfd the host holds (passed by the supervisor)
  and the host's ``/proc`` (a SIGKILL pending, exiting, the exit status); an OOM kill is the
  pod's memory cgroup ``oom_kill`` counter read from the host's ``/sys/fs/cgroup``; the pod's
  own death is its init's pidfd;
* **one verb ends a pod**: :meth:`Pod.end` (``SIGKILL`` to the container's init through a pidfd,
  which ends every process in it at once; the engine then removes the container).

The kernel's ipc sockets, its connection file, its log and ``/io/out`` live in a size-capped tmpfs
volume mounted at ``/io``, which this process reaches through the volume's mount point (so it
must run as root, in the engine's mount namespace). Inputs are a host directory mounted
read-only at ``/data``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import stat
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etpo_gym.errors import EngineUnavailable, ImageMissing, KernelStartError, SandboxError

SUPERVISOR = "/opt/etpo/supervisor.py"
IO_DIR, DATA_DIR, WORK_DIR, CTL_DIR = "/io", "/data", "/work", "/ctl"
CTL_SOCKET = "ctl.sock"
SUPERVISOR_LOG = "supervisor.log"
MAX_MESSAGE = 1 << 16
#: Capabilities of the supervisor (uid 0): to become the kernel uid, and to empty the kernel's
#: bounding set. Everything else is dropped; the kernel itself has none at all.
SUPERVISOR_CAPS = ("SETUID", "SETGID", "SETPCAP")
#: Memory a pod gets on top of its kernel's limit, for the supervisor: about 170 MiB resident,
#: most of it the imported modules that every kernel shares with it (copy-on-write).
SUPERVISOR_MEMORY = 256 * 2**20
BACKEND = "docker"


def _bind_in(listener: socket.socket, directory: Path, name: str) -> None:
    """Bind ``listener`` to ``directory / name`` by a path of a few dozen bytes, however long
    ``directory`` is: ``AF_UNIX`` paths end at 108 bytes, and the host's temporary directory,
    where pods keep their directories, may be longer (a CI workspace, pytest's directories). The
    path goes through a descriptor of ``directory`` (``/proc/self/fd/N/name``)."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        listener.bind(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PodSettings:
    """Everything a pod's container is started with.

    Attributes:
        image: the sandbox image.
        uid: the kernel's uid (names no user on the host).
        memory_limit: bytes of memory for the kernel; the pod gets ``SUPERVISOR_MEMORY`` more
            (swap equal to it: none).
        cpus: CPU limit.
        pids_limit: most processes and threads in the pod.
        tmpfs_size: bytes of each of ``/work`` and ``/tmp``.
        output_size: bytes of the ``/io`` volume.
        shm_size: bytes of ``/dev/shm``.
        lifetime: seconds after which the pod ends, whatever runs in it.
        startup_timeout: seconds a starting pod gets to be ready.
        labels: container (and volume) labels: owner and instance.
    """

    image: str
    uid: int
    memory_limit: int
    cpus: float
    pids_limit: int
    tmpfs_size: int
    output_size: int
    shm_size: int
    lifetime: float
    startup_timeout: float
    labels: Mapping[str, str]


def _readable(fd: int) -> bool:
    """Whether a pidfd says its process has exited (or the descriptor is gone)."""
    if fd < 0:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


_PF_EXITING = 0x4
_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def process_end(pidfd: int) -> tuple[bool, int | None]:
    """``(ended, exit status)`` of the process of ``pidfd``, from the host's ``/proc``.

    Ended means it can run no more code: exited, exiting (an OOM-killed process with a large
    mapping takes seconds to exit after its SIGKILL), or with a SIGKILL pending. The status is
    the one it exits with (negative: killed by that signal), ``None`` when no longer readable
    here (reaped).
    """
    try:
        info = Path(f"/proc/self/fdinfo/{pidfd}").read_text()
        pid = int(info.split("Pid:", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return _readable(pidfd), None
    if pid <= 0:
        return True, None  # reaped by its parent
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, IndexError):
        return _readable(pidfd), None
    # stat fields from the third on: state is [0], flags [6], exit_code (wait status) [49].
    if fields[0] in "ZX" or int(fields[6]) & _PF_EXITING:
        try:
            return True, os.waitstatus_to_exitcode(int(fields[49]))
        except (IndexError, ValueError):
            return True, None
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & _SIGKILL_BIT:
            return True, -signal.SIGKILL
    return False, None


def _io_mount(info: Mapping[str, Any]) -> Path:
    """The host path of a pod's io volume, from the engine's ``inspect`` of its container."""
    for mount in info.get("Mounts", []):
        if mount.get("Destination") == IO_DIR:
            return Path(os.path.realpath(mount["Source"]))
    raise KernelStartError("the pod's container has no io volume", backend=BACKEND)


def cgroup_dir(pid: int, controller: str) -> Path | None:
    """The host path of process ``pid``'s cgroup for ``controller`` (v1), or its unified
    cgroup (v2); ``None`` if it cannot be found."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/")
    return None


def cpu_seconds(cgroup: Path | None) -> float | None:
    """CPU time used so far by a cgroup (v1 ``cpuacct.usage``, v2 ``cpu.stat``), in seconds."""
    if cgroup is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        return int((cgroup / "cpuacct.usage").read_text()) / 1e9
    with contextlib.suppress(OSError, ValueError):
        for line in (cgroup / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    return None


def oom_kill_count(cgroup: Path | None) -> int | None:
    """The ``oom_kill`` counter of a memory cgroup (v1 ``memory.oom_control``, v2
    ``memory.events``), or ``None`` if it cannot be read."""
    if cgroup is None:
        return None
    for name in ("memory.oom_control", "memory.events"):
        try:
            text = (cgroup / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


@dataclass
class PodKernel:
    """A kernel the supervisor forked: its pid inside the pod and a pidfd the host holds."""

    pid: int
    pidfd: int
    oom_kills_at_start: int | None

    def end(self) -> tuple[bool, int | None]:
        """``(ended, exit status)``: see :func:`process_end`."""
        if self.pidfd < 0:
            return True, None
        return process_end(self.pidfd)

    def alive(self) -> bool:
        """Whether the kernel can still run code."""
        return not self.end()[0]

    def signal(self, signum: int) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, signum)

    def close(self) -> None:
        fd, self.pidfd = self.pidfd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


#: Pods of this process, whose descriptors a forked child must not keep (see below).
_PODS: weakref.WeakSet[Pod] = weakref.WeakSet()


def _forget_pods_in_child() -> None:
    """In a child forked from an owner: close its copies of the pods' sockets, so that when the
    owner dies nothing keeps a pod's listener or connection open (the supervisor watches the
    owner's pidfd too). The child leaves the pods themselves alone."""
    for pod in list(_PODS):
        pod._drop_inherited()


os.register_at_fork(after_in_child=_forget_pods_in_child)


class Pod:
    """One container with a supervisor. Made by :meth:`start`; every request is serialised."""

    def __init__(self, settings: PodSettings, root: Path, name: str) -> None:
        self.settings = settings
        self.name = name
        self.root = root / name
        self.data_dir = self.root / "data"
        self.ctl_dir = self.root / "ctl"
        self.io_dir: Path | None = None
        self.container: Any = None
        self.container_id = ""
        self.init_pid = 0
        self.init_fd = -1
        self.cgroup: Path | None = None  # memory
        self.cpu_cgroup: Path | None = None
        self.started = 0.0
        self.kernels = 0  # how many kernels it has served
        self.preload_s = 0.0
        self._conn: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._ended = False
        _PODS.add(self)

    # -- life ----------------------------------------------------------------------------

    def start(self, client: Any) -> None:
        """Create the container and wait until its supervisor is ready. Raises
        :class:`KernelStartError` (or ``ImageMissing``/``EngineUnavailable``); ends the pod
        before raising."""
        try:
            self._start(client)
        except KernelStartError as exc:
            tail = self.log_tail()
            self.end()
            if tail and not exc.log_tail:
                raise KernelStartError(exc.reason, backend=BACKEND, log_tail=tail) from exc
            raise
        except BaseException:
            self.end()
            raise

    def _start(self, client: Any) -> None:
        import docker.errors
        from docker.types import DriverConfig, LogConfig, Mount, Ulimit

        s = self.settings
        for directory in (self.root, self.data_dir, self.ctl_dir):
            directory.mkdir(mode=0o700)
        self.data_dir.chmod(0o755)  # the kernel uid reads the inputs through the bind mount
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener = listener
        try:
            _bind_in(listener, self.ctl_dir, CTL_SOCKET)
            listener.listen(1)
            scratch = f"size={s.tmpfs_size},uid={s.uid},gid={s.uid},mode=0700,nosuid,nodev"
            io_options = (
                f"size={s.output_size},uid={s.uid},gid={s.uid},mode=0700,nosuid,nodev,noexec"
            )
            try:
                # Created, then started: a container that was created but failed to start is
                # known here and removed by end() (it would never be auto-removed).
                self.container = client.containers.create(
                    s.image,
                    command=[
                        "python3",
                        SUPERVISOR,
                        json.dumps({"uid": s.uid, "lifetime": s.lifetime}),
                    ],
                    name=self.name,
                    auto_remove=True,
                    labels=dict(s.labels),
                    init=True,
                    user="0:0",
                    network_mode="none",
                    ipc_mode="private",
                    shm_size=s.shm_size,
                    read_only=True,
                    tmpfs={
                        WORK_DIR: scratch,
                        "/tmp": scratch,
                        # The pod's cgroup counters (peak memory, CPU time) would outlive a
                        # kernel: hidden from it. The host reads them from its own side.
                        "/sys/fs/cgroup": "ro,size=4k,nosuid,nodev,noexec",
                    },
                    mounts=[
                        Mount(
                            IO_DIR,
                            None,
                            type="volume",
                            labels=dict(s.labels),
                            driver_config=DriverConfig(
                                "local", {"type": "tmpfs", "device": "tmpfs", "o": io_options}
                            ),
                        ),
                        Mount(DATA_DIR, str(self.data_dir), type="bind", read_only=True),
                        Mount(CTL_DIR, str(self.ctl_dir), type="bind"),
                    ],
                    working_dir=WORK_DIR,
                    environment={"HOME": WORK_DIR, "TMPDIR": "/tmp"},
                    hostname="sandbox",
                    mem_limit=s.memory_limit + SUPERVISOR_MEMORY,
                    memswap_limit=s.memory_limit + SUPERVISOR_MEMORY,
                    pids_limit=s.pids_limit,
                    nano_cpus=int(s.cpus * 1e9),
                    cap_drop=["ALL"],
                    cap_add=list(SUPERVISOR_CAPS),
                    security_opt=["no-new-privileges"],
                    ulimits=[
                        Ulimit(name="nofile", soft=1024, hard=1024),
                        Ulimit(name="core", soft=0, hard=0),
                    ],
                    log_config=LogConfig(
                        type="json-file", config={"max-size": "1m", "max-file": "1"}
                    ),
                )
                self.container_id = self.container.id
                if self._ended:  # ended by another thread while the engine made it
                    raise KernelStartError("the pod was ended while it started", backend=BACKEND)
                self.container.start()
            except docker.errors.ImageNotFound:
                raise ImageMissing(s.image) from None
            except docker.errors.APIError as exc:
                raise KernelStartError(
                    f"the engine could not start a container: {exc.explanation or exc}",
                    backend=BACKEND,
                ) from exc
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(str(exc).splitlines()[0][:200]) from exc
            self.started = time.monotonic()
            self._find_init(client)
            listener.settimeout(s.startup_timeout)
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                reason = (
                    f"the pod's supervisor did not connect within {s.startup_timeout:g} s"
                    if isinstance(exc, TimeoutError)
                    else f"the pod was ended while it started ({exc})"
                )
                raise KernelStartError(reason, backend=BACKEND) from None
        finally:
            self._listener = None
            listener.close()
            # One owner connection per pod: nothing else may connect later.
            with contextlib.suppress(OSError):
                (self.ctl_dir / CTL_SOCKET).unlink()
        self._conn = conn
        if self._ended:
            raise KernelStartError("the pod was ended while it started", backend=BACKEND)
        try:
            ready = self._handshake(conn)
        except OSError as exc:
            raise KernelStartError(
                f"the pod's supervisor stopped answering while it started ({exc!r})",
                backend=BACKEND,
            ) from None
        if ready.get("op") != "ready" or not ready.get("ok"):
            raise KernelStartError(
                "the pod did not come up clean: "
                + "; ".join(ready.get("problems") or ["its supervisor exited"]),
                backend=BACKEND,
            )
        self.preload_s = float(ready.get("preload_s") or 0.0)

    def _handshake(self, conn: socket.socket) -> dict[str, Any]:
        """Hello, the owner's pidfd, then the supervisor's ready report."""
        conn.settimeout(self.settings.startup_timeout)
        hello = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
        if hello.get("op") != "hello":
            raise KernelStartError("the pod's supervisor did not say hello", backend=BACKEND)
        owner = os.pidfd_open(os.getpid())
        try:
            message = {"op": "owner", "socket_inode": os.fstat(conn.fileno()).st_ino}
            socket.send_fds(conn, [json.dumps(message).encode()], [owner])
        finally:
            os.close(owner)
        return json.loads(conn.recv(MAX_MESSAGE) or b"{}")

    def _find_init(self, client: Any) -> None:
        """The container's init: its pid, a pidfd on it, and its memory cgroup."""
        info = client.api.inspect_container(self.container_id)
        self.io_dir = _io_mount(info)
        pid = int(info["State"].get("Pid") or 0)
        if not pid:
            raise KernelStartError("the pod's container exited at once", backend=BACKEND)
        fd = os.pidfd_open(pid)
        # The pid is the container's only if it still runs: checked after the pidfd holds it.
        if not info["State"].get("Running") or _readable(fd):
            os.close(fd)
            raise KernelStartError("the pod's container exited at once", backend=BACKEND)
        self.init_pid, self.init_fd = pid, fd
        self.cgroup = cgroup_dir(pid, "memory")
        self.cpu_cgroup = cgroup_dir(pid, "cpuacct")

    def alive(self) -> bool:
        """Whether the container still runs (a pidfd poll, no engine call)."""
        return not self._ended and self.init_fd >= 0 and not _readable(self.init_fd)

    def age(self) -> float:
        return time.monotonic() - self.started

    def end(self) -> None:
        """End the pod now: every process in it is dead on return. Idempotent, any thread."""
        self._ended = True
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting in accept
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in a request
            conn.close()
        fd, self.init_fd = self.init_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            # The init exits only once every process in its pid namespace is gone.
            with contextlib.suppress(OSError, ValueError):
                select.select([fd], [], [], 10.0)
            os.close(fd)
        elif self.container is not None:
            # Never found running (created only, or gone at once): removing it is the only way
            # a created container goes, and kills one that started meanwhile.
            with contextlib.suppress(Exception):
                self.container.remove(force=True, v=True)

    # -- hand-over (a pod server's pods) -------------------------------------------------------

    def hand_over(self, owner_pidfd: int, timeout: float = 10.0) -> None:
        """Make the process of ``owner_pidfd`` this pod's owner (the supervisor lives as long as
        it from now on). The caller then passes the connection and the init's pidfd to it and
        :meth:`release` s its own copies. Raises :class:`SandboxError` if the supervisor refuses
        (the pod has served a kernel or is not clean, or that process has exited)."""
        self.request({"op": "owner"}, timeout=timeout, fds=(owner_pidfd,))

    def move_to(self, parent: Path) -> None:
        """Say that this pod's directory is now ``parent / name`` (renamed by the caller)."""
        self.root = parent / self.name
        self.data_dir = self.root / "data"
        self.ctl_dir = self.root / "ctl"

    def facts(self) -> dict[str, Any]:
        """What another process needs to adopt this pod (with its two descriptors)."""
        return {
            "name": self.name,
            "container_id": self.container_id,
            "init_pid": self.init_pid,
            "started": self.started,
            "preload_s": self.preload_s,
            "uid": self.settings.uid,
        }

    def descriptors(self) -> tuple[int, int]:
        """The connection to the supervisor and the pidfd of the container's init."""
        if self._conn is None or self.init_fd < 0:
            raise SandboxError(f"pod {self.name} has ended", backend=BACKEND)
        return self._conn.fileno(), self.init_fd

    def release(self) -> None:
        """Close this process's descriptors of a pod handed to another process; the pod itself
        is left running (it is the new owner's)."""
        self._drop_inherited()

    @classmethod
    def adopt(
        cls,
        settings: PodSettings,
        root: Path,
        facts: Mapping[str, Any],
        conn_fd: int,
        init_fd: int,
        client: Any,
    ) -> Pod:
        """The pod a pod server handed to this process (already its owner), from ``facts``
        (:meth:`facts`) and the two descriptors it sent, which the pod owns from now on. What
        the server says is checked against the engine: the container of that id has that name,
        runs, and its init is the process of ``init_fd``; the pod's directory is ``root / name``,
        a real directory of this uid. Raises :class:`SandboxError` otherwise (both descriptors
        closed: the supervisor sees its connection close and ends the pod)."""
        conn = socket.socket(fileno=conn_fd)
        try:
            name = str(facts["name"])
            if not re.fullmatch(r"etpo-gym-\d+-[0-9a-f]{10}", name):
                raise ValueError(f"a pod name {name[:80]!r}")
            pod = cls(settings, root, name)
        except Exception as exc:
            conn.close()
            os.close(init_fd)
            raise SandboxError(f"a handed-over pod was not usable: {exc}", backend=BACKEND) from exc
        pod._conn, pod.init_fd = conn, init_fd
        try:
            info = os.lstat(pod.root)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                raise ValueError(f"{pod.root} is not a directory of this uid")
            pod.container_id = str(facts["container_id"])
            container = client.api.inspect_container(pod.container_id)
            pid = int(container["State"].get("Pid") or 0)
            fd_pid = int(
                Path(f"/proc/self/fdinfo/{init_fd}").read_text().split("Pid:", 1)[1].split()[0]
            )
            if container.get("Name", "").lstrip("/") != name or pid != fd_pid or pid <= 0:
                raise ValueError("the engine does not know the container as handed over")
            if not container["State"].get("Running") or _readable(init_fd):
                raise ValueError("the pod's container has exited")
            pod.init_pid = pid
            pod.io_dir = _io_mount(container)
            pod.container = client.containers.prepare_model(container)
            pod.started = float(facts["started"])
            pod.preload_s = float(facts.get("preload_s") or 0.0)
        except Exception as exc:
            pod.release()
            raise SandboxError(f"a handed-over pod was not usable: {exc}", backend=BACKEND) from exc
        pod.cgroup = cgroup_dir(pod.init_pid, "memory")
        pod.cpu_cgroup = cgroup_dir(pod.init_pid, "cpuacct")
        return pod

    def _drop_inherited(self) -> None:
        """In a forked child: close the copies of this pod's descriptors, touch nothing else."""
        self._ended = True
        for sock in (self._listener, self._conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._listener = self._conn = None
        if self.init_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.init_fd)
            self.init_fd = -1
        self.container = None  # the parent's: never removed from here

    def wait_removed(self, client: Any, timeout: float = 30.0) -> None:
        """After :meth:`end`: wait until the engine has removed the container (and its
        anonymous volume); remove it here if it has not by then."""
        import docker.errors

        if not self.container_id:
            return
        # Asked by polling: the engine's own wait for "removed" sometimes missed a removal that
        # happened as it started waiting, and returned only at its timeout (30 s, seen when a
        # pod server ended its pods at once).
        deadline = time.monotonic() + timeout
        pause = 0.01
        while time.monotonic() < deadline:
            try:
                client.api.inspect_container(self.container_id)
            except docker.errors.NotFound:
                return
            except Exception:
                break
            time.sleep(pause)
            pause = min(0.2, pause * 2)
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.api.remove_container(self.container_id, force=True, v=True)

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the supervisor's log (in the root-only control directory)."""
        try:
            with open(self.ctl_dir / SUPERVISOR_LOG, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - max_bytes))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def oom_kills(self) -> int | None:
        """The pod's memory cgroup's OOM kill count (its supervisor is never the first pick)."""
        return oom_kill_count(self.cgroup)

    def cpu_seconds(self) -> float | None:
        """CPU seconds every process of the pod used so far, from its cgroup on the host."""
        return cpu_seconds(self.cpu_cgroup)

    # -- requests ------------------------------------------------------------------------

    def request(
        self, message: Mapping[str, object], timeout: float = 30.0, fds: tuple[int, ...] = ()
    ) -> tuple[dict[str, Any], list[int]]:
        """Send one request (with ``fds``) and wait for its reply (and descriptors). Raises
        :class:`SandboxError` if the supervisor is gone, does not answer, or refuses."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise SandboxError(f"pod {self.name} has ended", backend=BACKEND)
            try:
                conn.settimeout(timeout)
                payload = json.dumps(message).encode()
                if fds:
                    socket.send_fds(conn, [payload], list(fds))
                else:
                    conn.sendall(payload)
                data, received, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 4)
            except OSError as exc:
                raise SandboxError(
                    f"pod {self.name}: no answer from its supervisor to {message.get('op')}: "
                    f"{exc!r}",
                    backend=BACKEND,
                ) from exc
        if not data:
            for fd in received:
                os.close(fd)
            raise SandboxError(f"pod {self.name}: its supervisor exited", backend=BACKEND)
        reply = json.loads(data)
        if not reply.get("ok"):
            for fd in received:
                os.close(fd)
            raise SandboxError(
                f"pod {self.name}: {message.get('op')} failed: {reply.get('error')}",
                backend=BACKEND,
            )
        return reply, list(received)

    def spawn(self, seed: int, key: str, env: Mapping[str, str]) -> PodKernel:
        """Fork a fresh kernel (the pod must be clean). Returns once it has made its files."""
        oom_before = self.oom_kills()
        limit = self.settings.memory_limit
        request = {
            "op": "spawn",
            "seed": seed,
            "key": key,
            "env": dict(env),
            # A large allocation fails with MemoryError (as on the local backend) before the OOM
            # killer has to step in; the rest is for code, libraries and tmpfs pages.
            "data_limit": max(limit - 256 * 2**20, limit * 3 // 4),
        }
        reply, fds = self.request(request, timeout=self.settings.startup_timeout)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SandboxError(f"pod {self.name}: spawn sent no pidfd", backend=BACKEND)
        self.kernels += 1
        return PodKernel(int(reply["pid"]), fds[0], oom_before)

    def kill_all(self) -> int | None:
        """Kill the kernel and every process it started; returns the kernel's exit status."""
        reply, _ = self.request({"op": "kill"})
        return reply.get("status")

    def kernel_status(self) -> int | None:
        """The last kernel's exit status (``None`` while it runs), as its parent saw it."""
        reply, _ = self.request({"op": "status"}, timeout=10.0)
        return reply.get("status")

    def process_count(self) -> int:
        """Processes in the pod besides its init and supervisor."""
        reply, _ = self.request({"op": "count"}, timeout=10.0)
        return int(reply["processes"])

    def wipe(self, timeout: float = 60.0) -> list[str]:
        """Kill, remove and empty everything the last kernel made; what could not be proven
        clean (empty: the pod is clean and may serve another kernel)."""
        reply, _ = self.request({"op": "wipe"}, timeout=timeout)
        return [str(p) for p in reply.get("problems") or []] if not reply.get("clean") else []
