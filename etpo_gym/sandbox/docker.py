"""A Jupyter kernel in a locked-down Docker container, one fresh container per kernel.

Each kernel lives in its own container, which no other kernel ever uses:

* **no network** (``network_mode="none"``): the host reaches the kernel through ZMQ **ipc**
  sockets in a small, size-capped tmpfs volume mounted at ``/io`` (which also holds ``/io/out``,
  the predictions); the core pins each socket before any agent code runs (opened
  ``O_PATH|O_NOFOLLOW``, checked to be a socket of the kernel's uid, connected through
  ``/proc/self/fd/N``) and never reconnects;
* **locked down**: read-only root file system, size-capped tmpfs work dir (``/work``) and
  ``/tmp``, memory with swap equal to it, a data-segment limit just below it (a large allocation
  raises ``MemoryError`` as on the local backend; the cgroup is the backstop), pids limit, CPU
  limit, a uid that exists neither in the image nor on the host, ``cap_drop=ALL``,
  ``no-new-privileges``, ``nofile``/``core`` ulimits, capped logs, ``--init`` as PID 1, so that
  the kernel's death ends the container;
* **inputs** are a host directory of its own, mounted read-only at ``/data``; the evaluation
  labels are never written there (the env keeps them on the host).

A kill is one ``SIGKILL`` to the container's init through a pidfd (every process of its PID
namespace dies with it); removal of the container, its volume and its host directory happens on
the core's janitor thread. Everything is labelled with its owner (see ``engine.py``), so what a
killed owner leaves behind is reaped by the next start.

The engine must run on this machine and this process must be able to read its volumes (root):
the ipc sockets are files in a volume under the engine's data root.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError, EngineUnavailable, ImageMissing, KernelStartError
from etpo_gym.sandbox import engine
from etpo_gym.sandbox.engine import (
    DIR_PREFIX,
    LABEL_INSTANCE,
    LABEL_OWNER_START,
    connect_engine,
    owner_labels,
    reap_once,
    start_time,
)
from etpo_gym.sandbox.files import remove_tree
from etpo_gym.sandbox.image import default_image
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
)

# Re-exported: tests and tools find these here.
list_resources = engine.list_resources
reap_orphans = engine.reap_orphans

IO_DIR, DATA_DIR, WORK_DIR = "/io", "/data", "/work"

# Runs as the container's command: writes the connection file into the io volume and starts the
# kernel in the same interpreter (no shell, nothing else in the container).
_BOOT = """\
import os, sys
os.umask(0o077)
os.mkdir("/io/out")
with open("/io/kernel.json", "w") as f:
    f.write(sys.argv[1])
sys.argv = ["ipykernel", "-f", "/io/kernel.json", *sys.argv[2:]]
from ipykernel.kernelapp import launch_new_instance
launch_new_instance()
"""


def docker_status(image: str | None = None) -> tuple[bool, str]:
    """Whether the Docker sandbox can run here (engine answers, image built, volumes readable),
    and why not."""
    image = image or default_image()
    try:
        client = connect_engine(timeout=10)
    except EngineUnavailable as exc:
        return False, exc.reason
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


def _free_uid(first: int = 61000) -> int:
    """A uid (and gid) that names no user or group on this host."""
    users = {p.pw_uid for p in pwd.getpwall()}
    groups = {g.gr_gid for g in grp.getgrall()}
    for uid in range(first, first + 4000):
        if uid not in users and uid not in groups:
            return uid
    raise ConfigError(f"no free uid in {first}..{first + 3999} on this host for the kernel")


class DockerBackend(Backend):
    """Containers from one image with one set of limits; see :class:`DockerSandbox`."""

    name = "docker"

    def __init__(
        self,
        memory_limit: int = 2 * 2**30,
        image: str | None = None,
        cpus: float = 1.0,
        pids_limit: int = 256,
        tmpfs_size: int = 256 * 2**20,
        output_size: int = 80 * 2**20,
        uid: int | None = None,
    ) -> None:
        checks = [
            ("memory_limit", memory_limit, memory_limit >= 512 * 2**20, "at least 512 MiB"),
            ("cpus", cpus, 0 < cpus <= (os.cpu_count() or 1), f"in (0, {os.cpu_count()}]"),
            ("pids_limit", pids_limit, pids_limit >= 16, "an integer >= 16"),
            ("tmpfs_size", tmpfs_size, tmpfs_size >= 2**20, "at least 1 MiB"),
            ("output_size", output_size, output_size >= 2**20, "at least 1 MiB"),
        ]
        for key, value, ok, accepted in checks:
            if not ok:
                raise ConfigError(f"DockerSandbox {key}={value!r} is not accepted: use {accepted}")
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
        self.memory_limit = int(memory_limit)
        self.image = image or default_image()
        self.cpus = float(cpus)
        self.pids_limit = int(pids_limit)
        self.tmpfs_size = int(tmpfs_size)
        self.output_size = int(output_size)
        self.uid = uid
        #: label value that marks this backend's containers and volumes
        self.instance = secrets.token_hex(6)
        self.root: Path | None = None
        self.labels: dict[str, str] = {}
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._count = 0

    @property
    def isolation(self) -> str:
        return "container"

    def client(self) -> Any:
        """This thread's Docker client (the SDK's HTTP session is not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect_engine()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def open(self) -> None:
        if self.root is not None:
            return
        import docker.errors

        client = self.client()
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise ImageMissing(self.image) from None
        except docker.errors.APIError as exc:
            raise EngineUnavailable(f"the Docker engine failed: {exc}") from exc
        reap_once(client)
        if self.uid is None:
            self.uid = _free_uid()
        self.labels = {**owner_labels(), LABEL_INSTANCE: self.instance}
        prefix = f"{DIR_PREFIX}{os.getpid()}-{self.labels[LABEL_OWNER_START]}-"
        self.root = Path(os.path.realpath(tempfile.mkdtemp(prefix=prefix)))

    def provisioner(self) -> DockerProvisioner:
        if self.root is None:
            raise EngineUnavailable("the Docker backend is not open")
        with self._lock:
            self._count += 1
            count = self._count
        name = f"etpo-gym-{os.getpid()}-{secrets.token_hex(5)}"
        return DockerProvisioner(self, name, self.root / f"k{count}")

    def close(self) -> None:
        root, self.root = self.root, None
        if root is not None:
            remove_tree(root)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        self._local = threading.local()


class DockerProvisioner(Provisioner):
    """One container running one kernel, with its io volume and host data directory."""

    def __init__(self, backend: DockerBackend, name: str, directory: Path) -> None:
        self.backend = backend
        self.name = name
        self.dir = directory
        self.container: Any = None
        self.volume: Any = None
        self.io_dir: Path | None = None
        self.init_pid = 0
        self.init_start: str | None = None
        self._lock = threading.Lock()
        self._killed = False
        self._facts: KernelFacts | None = None

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def out_dir(self) -> Path:
        if self.io_dir is None:
            raise FileNotFoundError("the container was not started")
        return self.io_dir / "out"

    def launch(self, spec: LaunchSpec) -> Connection:
        from docker.types import LogConfig, Ulimit

        backend = self.backend
        assert backend.uid is not None
        uid = backend.uid
        client = backend.client()
        self.dir.mkdir(mode=0o700)
        self.data_dir.mkdir(mode=0o755)  # the kernel's uid reads it through the bind mount
        environment = {
            "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": WORK_DIR,
            "TMPDIR": "/tmp",
            "IPYTHONDIR": "/tmp/.ipython",
            **spec.env,
            "ETPO_DATA_DIR": DATA_DIR,
            "ETPO_OUT_DIR": f"{IO_DIR}/out",
        }
        # A large allocation fails with MemoryError (like the local backend's address-space cap)
        # before the cgroup's OOM killer has to step in; the rest of the limit is for the
        # interpreter's code, libraries and tmpfs pages.
        limit = backend.memory_limit
        data_limit = max(limit - 256 * 2**20, limit * 3 // 4)
        tmpfs_opts = f"size={backend.tmpfs_size},uid={uid},gid={uid},mode=0700,nosuid,nodev"
        io_opts = f"size={backend.output_size},uid={uid},gid={uid},mode=0700,nosuid,nodev,noexec"
        try:
            self.volume = client.volumes.create(
                name=self.name,
                driver="local",
                driver_opts={"type": "tmpfs", "device": "tmpfs", "o": io_opts},
                labels=backend.labels,
            )
            with self._lock:
                if self._killed:
                    raise KernelStartError("kernel start cancelled", backend=backend.name)
                self.container = client.containers.run(
                    backend.image,
                    command=[
                        "python3",
                        "-c",
                        _BOOT,
                        json.dumps(connection_info(spec.key, f"{IO_DIR}/k")),
                        *KERNEL_ARGS,
                    ],
                    name=self.name,
                    detach=True,
                    labels=backend.labels,
                    init=True,
                    user=f"{uid}:{uid}",
                    network_mode="none",
                    read_only=True,
                    tmpfs={WORK_DIR: tmpfs_opts, "/tmp": tmpfs_opts},
                    volumes={
                        self.name: {"bind": IO_DIR, "mode": "rw"},
                        str(self.data_dir): {"bind": DATA_DIR, "mode": "ro"},
                    },
                    working_dir=WORK_DIR,
                    environment=environment,
                    hostname="sandbox",
                    mem_limit=limit,
                    memswap_limit=limit,
                    pids_limit=backend.pids_limit,
                    nano_cpus=int(backend.cpus * 1e9),
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    ulimits=[
                        Ulimit(name="nofile", soft=1024, hard=1024),
                        Ulimit(name="core", soft=0, hard=0),
                        Ulimit(name="data", soft=data_limit, hard=data_limit),
                    ],
                    log_config=LogConfig(
                        type="json-file", config={"max-size": "1m", "max-file": "1"}
                    ),
                )
            self.container.reload()
            self.init_pid = int(self.container.attrs["State"].get("Pid") or 0)
            self.init_start = start_time(self.init_pid) if self.init_pid else None
            # The volume's root is the host's (the kernel only sees what is inside): resolving
            # it here lets the core open everything below it without following symlinks.
            self.io_dir = Path(os.path.realpath(self.volume.attrs["Mountpoint"]))
        except KernelStartError:
            raise
        except Exception as exc:
            raise self._launch_error(exc) from exc
        return Connection(
            key=spec.key.encode(),
            socket_dir=self.io_dir,
            sockets={ch: f"k-{IPC_PORTS[ch]}" for ch in HOST_CHANNELS},
            socket_uid=uid,
        )

    def _launch_error(self, exc: Exception) -> Exception:
        import docker.errors

        if isinstance(exc, docker.errors.ImageNotFound):
            return ImageMissing(self.backend.image)
        if isinstance(exc, docker.errors.DockerException | OSError | KeyError | ValueError):
            return KernelStartError(
                f"the sandbox container failed to start: {exc}",
                backend=self.backend.name,
                log_tail=self.log_tail(),
            )
        return exc

    def _init_alive(self) -> bool:
        """Whether the container's init (hence its kernel) runs: a /proc look-up, no API call."""
        return bool(self.init_pid) and start_time(self.init_pid) == self.init_start

    def poll(self) -> int | None:
        if self.container is None:
            return -signal.SIGKILL if self._killed else None
        if self._init_alive():
            return None
        status = self.facts().exit_status
        return -signal.SIGKILL if status is None else status

    def send_signal(self, signum: int) -> None:
        # PID 1 is docker-init, which passes the signal on to the kernel.
        if self.container is not None and self._init_alive():
            with contextlib.suppress(Exception):
                self.container.kill(signal=signum)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
        if self.container is None or not self._init_alive():
            return
        killed = False
        with contextlib.suppress(OSError):  # no pidfd (gone, or no kernel support): below
            pidfd = os.pidfd_open(self.init_pid)
            try:
                # The pid names our init only if its start time still matches, checked after
                # the pidfd holds the process: no pid-reuse race.
                if self._init_alive():
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed = True
            finally:
                os.close(pidfd)
        if not killed:
            with contextlib.suppress(Exception):
                self.container.kill()
        # Every process of the container's PID namespace is gone once its init is.
        deadline = time.monotonic() + 5
        while self._init_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def cleanup(self) -> None:
        import docker.errors

        self.kill()
        client = self.backend.client()
        if self.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(self.container.id, force=True)
        if self.volume is not None:
            for attempt in range(20):
                try:
                    client.api.remove_volume(self.volume.name, force=True)
                    break
                except docker.errors.NotFound:
                    break
                except docker.errors.APIError:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)  # "volume in use" until the container removal settles
        remove_tree(self.dir)

    def facts(self) -> KernelFacts:
        if self._facts is not None:
            return self._facts
        container = self.container
        if container is None:
            return KernelFacts(exit_status=None)
        try:
            status = container.wait(timeout=5).get("StatusCode")
            container.reload()
            state = container.attrs.get("State", {})
        except Exception:
            return KernelFacts(exit_status=None)
        self._facts = KernelFacts(
            exit_status=status if isinstance(status, int) else state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
        )
        return self._facts

    def log_tail(self, max_bytes: int = 4000) -> str:
        if self.container is None:
            return ""
        try:
            return self.container.logs(tail=30).decode(errors="replace")[-max_bytes:]
        except Exception:
            return ""

    def fit_to_keep(self) -> bool:
        """Not when the code left a swarm of processes (a fork bomb, busy children)."""
        try:
            processes = self.container.top(ps_args="-e -o pid").get("Processes") or []
        except Exception:
            return False
        return len(processes) <= max(8, self.backend.pids_limit // 4)


class DockerSandbox(KernelSandbox):
    """:class:`KernelSandbox` over :class:`DockerBackend`: one fresh container per kernel.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: container memory in bytes (swap equal to it, i.e. none); ``None``: 2 GiB.
        max_output_bytes: output kept per cell (stdout, stderr, results), in bytes.
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
        backend = DockerBackend(memory_limit, image, cpus, pids_limit, tmpfs_size, output_size, uid)
        super().__init__(
            backend,
            timeout=timeout,
            max_output_bytes=max_output_bytes,
            startup_timeout=startup_timeout,
            interrupt_grace=interrupt_grace,
            pool_size=pool_size,
        )
        self.memory_limit = memory_limit
        self.pids_limit = backend.pids_limit
        self.image = backend.image
        #: label value that marks this sandbox's containers and volumes
        self.instance = backend.instance

    @property
    def container(self) -> Any:
        """The current kernel's container (docker SDK object), or ``None``."""
        provisioner = self.provisioner
        return provisioner.container if isinstance(provisioner, DockerProvisioner) else None
