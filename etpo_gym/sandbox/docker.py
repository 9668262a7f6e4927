"""A Jupyter kernel in a locked-down Docker container; fresh kernels are forked in long-lived pods.

**Pods.** A pod (``pod.py``) is a container whose supervisor (``container/supervisor.py``) has
imported numpy, pandas, scipy, scikit-learn and ipykernel once, and forks one fresh kernel at a
time from that interpreter. Between two kernels the supervisor kills every process the last one
left, removes its SysV IPC objects, empties every writable mount the kernel could write and checks
from the file systems' own counters that nothing is left; a pod that cannot be proven clean is
ended and replaced. A fresh kernel therefore costs a fork and the kernel's own start-up
(tens of ms) instead of a container and the imports (about a CPU-second). With ``reuse=False``
every kernel gets a pod of its own, used once: one fresh container per kernel, as before pods.

**Isolation**, per container (the limits are keyword arguments): no network
(``network_mode="none"``; the host reaches the kernel through ZMQ **ipc** sockets in a size-capped
tmpfs volume at ``/io``, pinned by the core before any agent code runs), read-only root file
system, size-capped tmpfs ``/work`` and ``/tmp``, a private IPC namespace and ``/dev/shm``, memory
with swap equal to it (a data-segment limit makes a large allocation raise ``MemoryError`` first),
pids and CPU limits, ``no-new-privileges``, capped logs, ``--init`` as PID 1, the pod's cgroup
counters hidden. The supervisor runs as uid 0 with ``CAP_SETUID``, ``CAP_SETGID`` and
``CAP_SETPCAP`` only; each kernel runs as a uid that exists neither in the image nor on the host,
with no capability at all (empty bounding set), no supplementary group, and cannot reach the
supervisor's control socket, signal it or read its memory. Inputs are a host directory mounted
read-only at ``/data``; the evaluation labels never enter the container.

**Seeds.** ``random`` and ``numpy.random`` are seeded per kernel. ``PYTHONHASHSEED`` is fixed per
pod (0, the image's; ``os.environ`` says so): a forked interpreter cannot change it, so
``hash()`` of a string does not vary with the episode seed on this backend.

**Owners.** The supervisor holds a pidfd of the process that owns the pod: when that process dies
(``kill -9`` included), the supervisor exits at once and the engine removes the container and
its anonymous volume (seconds later: ``benchmarks/docker_orphans.py``); a hard lifetime cap (``lifetime``) ends it in any case. Everything carries the
owner's labels (``engine.py``), so what an engine failure leaves is reaped by the next start.

**Facts.** Kernel death is a pidfd the host holds; the exit status comes from the kernel's parent
(the supervisor); an OOM kill is the pod's memory cgroup ``oom_kill`` counter, read on the host.
Nothing the kernel sends decides either.

The engine must run on this machine and this process must be able to read its volumes (root):
the ipc sockets are files in a volume under the engine's data root.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import secrets
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from etpo_gym.errors import (
    ConfigError,
    EngineUnavailable,
    ImageMissing,
    KernelStartError,
    SandboxError,
)
from etpo_gym.sandbox import engine
from etpo_gym.sandbox.engine import (
    DIR_PREFIX,
    LABEL_INSTANCE,
    LABEL_OWNER_START,
    connect_engine,
    owner_labels,
    reap_once,
)
from etpo_gym.sandbox.files import clear_dir, open_dir_nofollow, remove_tree
from etpo_gym.sandbox.image import default_image
from etpo_gym.sandbox.kernel import KernelSandbox
from etpo_gym.sandbox.pod import Pod, PodKernel, PodSettings
from etpo_gym.sandbox.provisioner import (
    HOST_CHANNELS,
    IPC_PORTS,
    Backend,
    Connection,
    KernelFacts,
    LaunchSpec,
    PathAliases,
    Provisioner,
)

log = logging.getLogger("etpo_gym.sandbox")

# Re-exported: tests and tools find these here.
list_resources = engine.list_resources
reap_orphans = engine.reap_orphans


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
    """Pods from one image with one set of limits; see the module docstring and
    :class:`DockerSandbox` for the settings."""

    #: the image's Python: a virtual environment at /opt/venv over the base image's interpreter
    path_aliases = PathAliases(
        [r"/opt/venv/lib/python3\.\d+/site-packages"],
        [r"/usr/lib/python3\.\d+", r"/usr/local/lib/python3\.\d+"],
    )

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
        reuse: bool = True,
        pods: int = 3,
        lifetime: float = 3600.0,
        startup_timeout: float = 180.0,
        pod_server: str | None = "auto",
    ) -> None:
        checks = [
            ("memory_limit", memory_limit, memory_limit >= 512 * 2**20, "at least 512 MiB"),
            ("cpus", cpus, 0 < cpus <= (os.cpu_count() or 1), f"in (0, {os.cpu_count()}]"),
            ("pids_limit", pids_limit, pids_limit >= 16, "an integer >= 16"),
            ("tmpfs_size", tmpfs_size, tmpfs_size >= 2**20, "at least 1 MiB"),
            ("output_size", output_size, output_size >= 2**20, "at least 1 MiB"),
            ("pods", pods, isinstance(pods, int) and 1 <= pods <= 16, "an integer in 1..16"),
            ("lifetime", lifetime, lifetime >= 60, "at least 60 s"),
            ("reuse", reuse, isinstance(reuse, bool), "True or False"),
            (
                "pod_server",
                pod_server,
                pod_server is None or (isinstance(pod_server, str) and pod_server != ""),
                "'auto', 'off', None or the path of a pod server's socket",
            ),
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
        self._uid_given = uid is not None
        #: a pod server's backend: its pods are labelled for hand-over (``podserver.py``)
        self.serves_others = False
        self.reuse = reuse
        self.pods = int(pods)
        self.lifetime = float(lifetime)
        self.startup_timeout = float(startup_timeout)
        self.pod_server = pod_server
        #: pods this backend took ready from a pod server (``podserver.py``), and started itself
        self.pods_from_server = 0
        self.pods_started = 0
        #: label value that marks this backend's containers and volumes
        self.instance = secrets.token_hex(6)
        self.root: Path | None = None
        self.labels: dict[str, str] = {}
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._idle: list[Pod] = []  # clean, ready to fork a kernel
        self._all: set[Pod] = set()
        self._coming = 0  # pods being started or wiped that will be idle (or ended) soon
        self._warmer: ThreadPoolExecutor | None = None
        self._retired_cpu_s = 0.0
        self._closed = False

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
        if self._closed:
            raise EngineUnavailable("the Docker backend is closed")
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
        if self.serves_others:
            self.labels[engine.LABEL_POD_SERVER] = "1"
        prefix = f"{DIR_PREFIX}{os.getpid()}-{self.labels[LABEL_OWNER_START]}-"
        self.root = Path(os.path.realpath(tempfile.mkdtemp(prefix=prefix)))
        self._warmer = ThreadPoolExecutor(1, thread_name_prefix="etpo-docker-pods")
        if self.reuse:
            # The first kernel's pod starts now, while the owner prepares its first episode.
            with self._lock:
                self._coming += 1
            self._warmer.submit(self._warm)

    def provisioner(self) -> DockerProvisioner:
        if self.root is None:
            raise EngineUnavailable("the Docker backend is not open")
        return DockerProvisioner(self)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pods = list(self._all)
            self._idle = []
            self._changed.notify_all()
        for pod in pods:
            pod.end()  # a pod still starting gives up at once
        if self._warmer is not None:
            self._warmer.shutdown(wait=True, cancel_futures=True)
            self._warmer = None
        client = None
        with contextlib.suppress(SandboxError):
            client = self.client()
        for pod in pods:
            if client is not None:
                pod.wait_removed(client)
        root, self.root = self.root, None
        if root is not None:
            remove_tree(root)
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()
        self._local = threading.local()

    # -- pods ------------------------------------------------------------------------------

    def _settings(self) -> PodSettings:
        assert self.uid is not None
        return PodSettings(
            image=self.image,
            uid=self.uid,
            memory_limit=self.memory_limit,
            cpus=self.cpus,
            pids_limit=self.pids_limit,
            tmpfs_size=self.tmpfs_size,
            output_size=self.output_size,
            shm_size=min(self.tmpfs_size, 64 * 2**20),
            lifetime=self.lifetime,
            startup_timeout=self.startup_timeout,
            labels=self.labels,
        )

    def _new_pod(self) -> Pod:
        """A ready pod from the pod server if one answers, else one started in this thread
        (its errors are the launch's)."""
        assert self.root is not None
        pod = self._from_server()
        if pod is not None:
            return pod
        pod = Pod(self._settings(), self.root, f"etpo-gym-{os.getpid()}-{secrets.token_hex(5)}")
        with self._lock:
            if self._closed:
                raise KernelStartError("the Docker backend is closed", backend=self.name)
            self._all.add(pod)
        try:
            pod.start(self.client())
        except BaseException:
            self._forget(pod)
            raise
        with self._lock:
            self.pods_started += 1
        return pod

    def _from_server(self) -> Pod | None:
        """A pod handed over by the machine's pod server, or ``None`` (none configured or
        running, none ready, other settings: the caller starts its own)."""
        from etpo_gym.sandbox import podserver

        path = podserver.resolve(self.pod_server)
        if path is None or self.root is None:
            return None
        try:
            client = self.client()
        except SandboxError:
            return None
        pod = podserver.take_pod(
            path, self._settings(), self.root, client, self.uid if self._uid_given else None
        )
        if pod is None:
            return None
        with self._lock:
            closed = self._closed
            if not closed:
                self._all.add(pod)
                self.pods_from_server += 1
        if closed:
            pod.end()
            remove_tree(pod.root)
            raise KernelStartError("the Docker backend is closed", backend=self.name)
        return pod

    # -- a pod server's side (``podserver.py``) ------------------------------------------------

    def fill(self) -> None:
        """Start pods in the background until ``pods`` are ready or coming."""
        with self._lock:
            if self._closed or self._warmer is None:
                return
            missing = self.pods - len(self._idle) - self._coming
            self._coming += max(0, missing)
        for _ in range(max(0, missing)):
            self._warmer.submit(self._warm)

    def take_ready(self) -> Pod | None:
        """A ready pod, taken out of this backend (the caller hands it to another process and
        then releases it, or :meth:`put_back` s it), or ``None`` if none is ready now; starts
        its replacement. Never waits for an engine call."""
        while True:
            with self._lock:
                pod = self._idle.pop() if self._idle else None
            if pod is None:
                self.fill()
                return None
            if pod.alive() and pod.age() < self.lifetime / 2:
                with self._lock:
                    self._all.discard(pod)
                self.fill()
                return pod
            self.retire_later(pod)

    def put_back(self, pod: Pod) -> None:
        """A pod from :meth:`take_ready` that was not handed over, ready again."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._all.add(pod)
                self._idle.append(pod)
                self._changed.notify_all()
        if closed:
            self._retire(pod)

    def retire_later(self, pod: Pod) -> None:
        """End ``pod`` on the background thread (an engine call may take seconds)."""
        with self._lock:
            warmer = None if self._closed else self._warmer
            self._all.add(pod)  # ended by close() if it comes first
        if warmer is None:
            self._retire(pod)
        else:
            warmer.submit(self._retire, pod)

    def retire_old(self) -> None:
        """End ready pods past half their lifetime (or ended), in the background, and start
        their replacements."""
        with self._lock:
            old = [p for p in self._idle if not p.alive() or p.age() >= self.lifetime / 2]
            self._idle = [p for p in self._idle if p not in old]
        for pod in old:
            self.retire_later(pod)
        self.fill()

    def ready_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def _warm(self) -> None:
        try:
            pod = self._new_pod()
        except Exception as exc:  # the launch that needs a pod starts its own and reports why
            log.warning("pre-starting a Docker sandbox pod failed: %s", exc)
            with self._lock:
                self._coming -= 1
                self._changed.notify_all()
            return
        self._shelve(pod, returning=True)

    def take(self) -> Pod:
        """A clean pod for a new kernel: an idle one, one about to be (a pod starting or being
        wiped), else one started here."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            with self._lock:
                while not self._idle and self._coming and not self._closed:
                    if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                        break
                if self._closed:
                    raise KernelStartError("the Docker backend is closed", backend=self.name)
                pod = self._idle.pop() if self._idle else None
            if pod is None:
                return self._new_pod()
            if pod.alive() and pod.age() < self.lifetime / 2:
                return pod
            self._retire(pod)  # its lifetime cap draws near, or it ended: try the next

    def returning(self, pod: Pod) -> None:
        """``pod``'s kernel was killed: it will be wiped and shelved (or ended) soon."""
        if self.reuse:
            with self._lock:
                self._coming += 1

    def give_back(self, pod: Pod) -> None:
        """After a kernel's cleanup: wipe ``pod`` and keep it for the next kernel, or end it."""
        keep = self.reuse and pod.alive() and pod.age() < self.lifetime / 2
        if keep:
            try:
                with contextlib.suppress(OSError):
                    fd = open_dir_nofollow(pod.data_dir)
                    try:
                        clear_dir(fd)
                    finally:
                        os.close(fd)
                problems = pod.wipe()
            except SandboxError as exc:
                problems = [str(exc)]
            if problems:
                log.warning("pod %s could not be proven clean (%s): replaced", pod.name, problems)
                keep = False
        if keep:
            self._shelve(pod, returning=self.reuse)
        else:
            with self._lock:
                if self.reuse:
                    self._coming -= 1
                self._changed.notify_all()
            self._retire(pod)

    def _shelve(self, pod: Pod, returning: bool) -> None:
        with self._lock:
            if returning:
                self._coming -= 1
            keep = not self._closed and len(self._idle) < self.pods
            if keep:
                self._idle.append(pod)
            self._changed.notify_all()
        if not keep:
            self._retire(pod)

    def pod_import_s(self) -> list[float]:
        """Seconds each live pod's supervisor spent importing the kernel's modules before it was
        ready (what a cold start waits for; later kernels of the pod share the imports)."""
        with self._lock:
            return [pod.preload_s for pod in self._all if pod.preload_s]

    def container_cpu_s(self) -> float:
        """CPU seconds used by every pod of this backend so far (their cgroups, on the host)."""
        with self._lock:
            pods, total = list(self._all), self._retired_cpu_s
        return total + sum(pod.cpu_seconds() or 0.0 for pod in pods)

    def _retire(self, pod: Pod) -> None:
        used = pod.cpu_seconds()  # read while its cgroup exists
        with self._lock:
            if pod in self._all:
                self._retired_cpu_s += used or 0.0
            self._all.discard(pod)
        pod.end()
        with contextlib.suppress(Exception):
            pod.wait_removed(self.client())
        remove_tree(pod.root)

    def _forget(self, pod: Pod) -> None:
        with self._lock:
            self._all.discard(pod)
        remove_tree(pod.root)


class DockerProvisioner(Provisioner):
    """One kernel forked in a pod of the backend."""

    def __init__(self, backend: DockerBackend) -> None:
        self.backend = backend
        self.pod: Pod | None = None
        self.kernel: PodKernel | None = None
        self._lock = threading.Lock()
        self._killed = False
        self._returned = False
        self._status: int | None = None

    @property
    def data_dir(self) -> Path:
        if self.pod is None:
            raise FileNotFoundError("the kernel was not launched")
        return self.pod.data_dir

    @property
    def out_dir(self) -> Path:
        if self.pod is None or self.pod.io_dir is None:
            raise FileNotFoundError("the kernel was not launched")
        return self.pod.io_dir / "out"

    @property
    def container(self) -> Any:
        return None if self.pod is None else self.pod.container

    def launch(self, spec: LaunchSpec) -> Connection:
        backend = self.backend
        with self._lock:
            if self._killed:
                raise KernelStartError("kernel start cancelled", backend=backend.name)
        pod = backend.take()
        with self._lock:
            self.pod = pod
            if self._killed:
                raise KernelStartError("kernel start cancelled", backend=backend.name)
        try:
            kernel = pod.spawn(spec.seed, spec.key, spec.env)
        except SandboxError as exc:
            raise KernelStartError(
                f"the pod could not start a kernel: {exc}",
                backend=backend.name,
                log_tail=self.log_tail() or pod.log_tail(),
            ) from exc
        with self._lock:
            self.kernel = kernel
        assert pod.io_dir is not None
        return Connection(
            key=spec.key.encode(),
            socket_dir=pod.io_dir,
            sockets={ch: f"k-{IPC_PORTS[ch]}" for ch in HOST_CHANNELS},
            socket_uid=pod.settings.uid,  # a pod server's pod runs its kernels as its uid
        )

    def poll(self) -> int | None:
        if self._status is not None:
            return self._status
        kernel, pod = self.kernel, self.pod
        if kernel is None or pod is None:
            return -signal.SIGKILL if self._killed else None
        ended, status = kernel.end()
        if not ended:
            return None
        if status is None and pod.alive():  # reaped already: its parent knows how it ended
            with contextlib.suppress(SandboxError):
                status = pod.kernel_status()
        # Without either (the pod ended with it), it was killed with the pod.
        self._status = -signal.SIGKILL if status is None else int(status)
        return self._status

    def send_signal(self, signum: int) -> None:
        if self.kernel is not None:
            self.kernel.signal(signum)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            pod, returned = self.pod, self._returned
            self._returned = pod is not None
        if pod is None:
            return
        if not returned:
            self.backend.returning(pod)
        try:
            status = pod.kill_all()
        except SandboxError:
            pod.end()  # the supervisor cannot vouch for it: every process dies with the pod
            status = None
        if self._status is None and self.kernel is not None and status is not None:
            self._status = int(status)

    def cleanup(self) -> None:
        self.kill()
        pod, self.pod = self.pod, None
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.close()
        if pod is not None:
            self.backend.give_back(pod)

    def facts(self) -> KernelFacts:
        status = self.poll()
        kernel, pod = self.kernel, self.pod
        oom = False
        if kernel is not None and pod is not None and kernel.oom_kills_at_start is not None:
            now = pod.oom_kills()
            oom = now is not None and now > kernel.oom_kills_at_start
        return KernelFacts(exit_status=status, oom_killed=oom)

    def log_tail(self, max_bytes: int = 4000) -> str:
        pod = self.pod
        if pod is None or pod.io_dir is None:
            return ""
        try:
            fd = open_dir_nofollow(pod.io_dir)
        except OSError:
            return ""
        try:
            log_fd = os.open("kernel.log", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return ""
        finally:
            os.close(fd)
        with os.fdopen(log_fd, "rb") as fh:
            size = os.fstat(log_fd).st_size
            fh.seek(max(0, size - max_bytes))
            return fh.read(max_bytes).decode(errors="replace")

    def fit_to_keep(self) -> bool:
        """Not when the code left a swarm of processes (a fork bomb, busy children)."""
        pod = self.pod
        if pod is None:
            return False
        try:
            return pod.process_count() <= max(8, self.backend.pids_limit // 4)
        except SandboxError:
            return False


class DockerSandbox(KernelSandbox):
    """:class:`KernelSandbox` over :class:`DockerBackend`: fresh kernels forked in pods.

    Args:
        timeout: default per-``execute`` limit in seconds.
        memory_limit: memory of each pod in bytes (its supervisor, about 150 MiB of it shared
            with the kernel, and the kernel); swap equal to it, i.e. none. ``None``: 2 GiB.
        max_output_bytes: output kept per cell (stdout, stderr, results), in bytes.
        image: sandbox image (default: ``etpo-gym-sandbox:<version>-<digest>``, see
            ``etpo-gym sandbox build``).
        cpus: CPU limit of each pod (fractions allowed).
        pids_limit: most processes/threads in a pod (a fork bomb stops there).
        tmpfs_size: bytes of the ``/work`` and of the ``/tmp`` tmpfs each (counted in memory too).
        output_size: bytes of the io volume (sockets and predictions).
        pool_size: kernels pre-started for announced seeds (0: start each on demand).
        uid: uid the kernels run as; must name no user on the host (default: a free one >= 61000).
        startup_timeout: seconds a new pod or kernel gets to answer (generous: a pod imports
            numpy, pandas, scipy, scikit-learn and ipykernel first, which took over 60 s under a
            load average of 30 on 2 cores).
        interrupt_grace: seconds an interrupted kernel gets to become idle before it is replaced.
        reuse: fork each kernel in a pod wiped after the last one (default); ``False``: a new
            container per kernel, used once (the cost of a container and the imports each time).
        pods: most clean pods kept ready between kernels.
        lifetime: seconds after which a pod ends whatever runs in it (a pod past half of it
            serves no new kernel).
        pod_server: where new pods come from first: ``"auto"`` (default) the machine's pod server
            if one runs (``$ETPO_GYM_POD_SERVER``, else ``/run/etpo-gym/pods.sock``; see
            ``etpo-gym sandbox serve``), a socket path for that server, ``"off"`` or ``None``
            to start every pod here. A pod server's pods are ready at once (their imports are
            done) and become this process's own; when none is ready, or its settings differ from
            these, the pod is started here as without one.
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
        startup_timeout: float = 180.0,
        interrupt_grace: float = 2.0,
        reuse: bool = True,
        pods: int = 3,
        lifetime: float = 3600.0,
        pod_server: str | None = "auto",
    ) -> None:
        memory_limit = 2 * 2**30 if memory_limit is None else int(memory_limit)
        backend = DockerBackend(
            memory_limit,
            image,
            cpus,
            pids_limit,
            tmpfs_size,
            output_size,
            uid,
            reuse=reuse,
            pods=pods,
            lifetime=lifetime,
            startup_timeout=startup_timeout,
            pod_server=pod_server,
        )
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
