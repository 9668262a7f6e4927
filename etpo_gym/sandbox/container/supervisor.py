"""The sandbox image's supervisor: one long-lived container ("pod") serving a fresh kernel per
episode, forked from an interpreter that has already imported the heavy modules.

This file is copied into the image (``/opt/etpo/supervisor.py``); it is not part of the host's
package at run time and imports nothing from it. It runs as the only child of the container's
init, as uid 0 with no capability but ``CAP_SETUID``, ``CAP_SETGID`` and ``CAP_SETPCAP`` (the
engine drops the rest), ``no-new-privileges`` and the engine's seccomp profile.

**Owner.** At start it connects to a ``SOCK_SEQPACKET`` socket that the host process listens on,
in a directory only uid 0 can enter (``/ctl``), and receives a pidfd of the owning process. It
exits — which ends the container, and the engine then removes it with its anonymous volumes —
as soon as that pidfd says the owner died, the connection reaches EOF, no owner answers within
``CONNECT_S`` seconds, or the container's hard lifetime cap passes. No other process needs to
run for an orphan to go away. A pod server (the host's ``podserver.py``) may hand a clean pod
that has never served a kernel to another process: it sends that process's pidfd (``owner``),
and from then on the pod lives as long as the new owner, which holds the connection.

**Kernels.** ``spawn`` forks this single-threaded interpreter; the child starts a new session,
lowers its limits, drops every capability from its bounding set, becomes the kernel uid (no
capabilities, no supplementary groups), sets ``no-new-privileges`` and starts an ``ipykernel``
bound to ipc sockets in ``/io``. ``PYTHONHASHSEED`` is the one this interpreter started with
(fixed per pod): a forked interpreter cannot change it. ``random`` and ``numpy.random`` are seeded
per kernel after the fork. One kernel runs at a time.

**Wipe.** ``wipe`` proves the pod clean before the next kernel: every process but the init and
this one is killed (``kill(-1)`` as the kernel uid, which reaches every process of that uid at
once) and reaped; SysV IPC objects are removed; every writable mount that the kernel uid can
write (found in ``/proc/self/mountinfo``: roots it owns or that are world-writable, and the
mqueue file system) is emptied without following symlinks, and its root's mode, times and
extended attributes are reset; every other writable mount must be exactly as it was when the pod
started. Then it checks, from the file systems' own counters (``statvfs``: one inode, no block in
use), ``/proc/sysvipc``, ``/proc/net/unix`` and ``/proc``, that nothing is left. The host destroys
a pod whose wipe does not come back clean.

All file work on kernel-owned trees runs with the effective uid of the kernel (no
``CAP_DAC_OVERRIDE`` or ``CAP_FOWNER`` needed), after every kernel process is dead.

Protocol: one JSON object per message, descriptors as ``SCM_RIGHTS``. Requests ``spawn``,
``kill``, ``wipe``, ``status``, ``count`` and ``owner`` (a clean pod handed to another process:
the new owner's pidfd; the connection itself is passed on by the pod server, see the host's
``podserver.py``); each gets one reply with ``"ok"``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import os
import re
import select
import signal
import socket
import stat
import sys
import threading
import time
import traceback
from collections.abc import Iterator

CTL_DIR = "/ctl"
CTL_SOCKET = f"{CTL_DIR}/ctl.sock"
#: The supervisor's own stdout and stderr, in the root-only directory the host reads.
LOG = f"{CTL_DIR}/supervisor.log"
CONNECT_S = 5.0  # to connect to the owner and receive its pidfd
SPAWN_S = 30.0  # for a forked kernel to have made its files
KILL_S = 10.0  # for every killed process to be reaped
MAX_MESSAGE = 1 << 16
IO_DIR, WORK_DIR, DATA_DIR = "/io", "/work", "/data"
KERNEL_ARGS = ("--HistoryManager.enabled=False", "--IPKernelApp.log_level=ERROR")
FINGERPRINT_LIMIT = 10_000  # entries per mount; a larger writable tree cannot be proven unchanged

#: Imported once here so that each kernel starts with them loaded (fork shares the pages).
PRELOAD = (
    "numpy",
    "pandas",
    "scipy",
    "scipy.stats",
    "scipy.sparse",
    "scipy.optimize",
    "sklearn",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "sklearn.tree",
    "IPython",
    "ipykernel.kernelapp",
    "kernel_app",  # beside this file: ipykernel's application with queues that drop nothing
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "tornado.platform.asyncio",
)

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_IPC_RMID = 0

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}): {os.strerror(err)}")


# -- reading the container's state ------------------------------------------------------------


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[dict[str, object]]:
    """``/proc/self/mountinfo`` as dicts: ``point``, ``fstype``, ``writable`` (per-mount)."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or not tail:
            continue
        options = fields[5].split(",")
        mounts.append(
            {"point": _unescape(fields[4]), "fstype": tail[0], "writable": "rw" in options}
        )
    return mounts


def _pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def _sysvipc_count() -> int:
    count = 0
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            count += sum(1 for line in fh.readlines()[1:] if line.strip())
    return count


def _sysvipc_ids() -> list[tuple[str, int]]:
    ids = []
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            lines = fh.readlines()
        header = lines[0].split()
        column = header.index("msqid" if kind == "msg" else f"{kind}id")
        ids += [(kind, int(line.split()[column])) for line in lines[1:] if line.strip()]
    return ids


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _readable(fd: int) -> bool:
    """Whether a pidfd says its process has exited."""
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _foreign_unix_sockets(peer: str) -> int:
    """Unix sockets in this network namespace (abstract ones included) that are not ours.
    ``peer``: the inode of the owner's end of our connection, which the kernel accounts to the
    connecting side's namespace, ours."""
    own = _own_socket_inodes() | {peer}
    with open("/proc/net/unix") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return sum(1 for row in rows if len(row) >= 7 and row[6] not in own)


def _fingerprint(root: str, ignore: frozenset[str] = frozenset()) -> list[tuple[object, ...]]:
    """Every entry of the mount at ``root`` (not crossing into other mounts, not following
    symlinks) with what a change would alter; ``atime`` is left out (reading changes it).
    ``ignore``: relative paths left out (this supervisor's own log)."""
    top = os.lstat(root)
    entries: list[tuple[object, ...]] = []
    pending = [("", top)]
    while pending:
        rel, info = pending.pop()
        if rel in ignore:
            continue
        entries.append(
            (rel, info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns)
        )
        if len(entries) > FINGERPRINT_LIMIT:
            raise OSError(errno.EFBIG, f"{root} has more than {FINGERPRINT_LIMIT} entries")
        if not stat.S_ISDIR(info.st_mode):
            continue
        path = os.path.join(root, rel) if rel else root
        for name in sorted(os.listdir(path)):
            child = os.lstat(os.path.join(path, name))
            if child.st_dev != top.st_dev:
                continue  # another mount: judged on its own
            pending.append((os.path.join(rel, name), child))
    return sorted(entries)


# -- the supervisor ----------------------------------------------------------------------------


class Supervisor:
    def __init__(self, uid: int, lifetime: float) -> None:
        self.uid = uid
        self.deadline = time.monotonic() + lifetime
        self.ctl: socket.socket | None = None
        self.owner_fd = -1
        self.peer = ""  # socket inode of the owner's end of the connection
        self.poller = select.poll()
        self.spawned = 0  # kernels forked so far: a pod that served one is never handed over
        self.kernel_pid = 0
        self.kernel_status: int | None = None
        self.clean = False
        self.scratch: dict[str, tuple[int, int, int, int]] = {}  # point -> mode, uid, gid, mtime
        self.fixed: dict[str, list[tuple[object, ...]]] = {}
        self.mount_table: list[tuple[str, str, bool]] = []

    # -- life ----------------------------------------------------------------------------

    def run(self) -> int:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of the kernel come here to be reaped
        _prctl(_PR_SET_DUMPABLE, 0)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if not self.connect():
            return 3
        started = time.monotonic()
        with self.watchdog():
            for name in PRELOAD:
                try:
                    __import__(name)
                except Exception as exc:  # an optional module: the kernel imports it if it can
                    print(f"supervisor: preload {name}: {exc!r}", file=sys.stderr, flush=True)
        # Objects that live as long as the interpreter: keep the collector off their pages so
        # that forked kernels share them instead of copying them.
        gc.collect()
        gc.freeze()
        preload_s = time.monotonic() - started
        try:
            self.survey()
            problems = self.verify()
        except OSError as exc:
            problems = [f"survey: {exc}"]
        self.clean = not problems
        self.send(
            {
                "op": "ready",
                "ok": self.clean,
                "problems": problems,
                "preload_s": round(preload_s, 3),
                "scratch": sorted(self.scratch),
                "fixed": sorted(self.fixed),
            }
        )
        return self.serve()

    def connect(self) -> bool:
        """Connect to the owner's socket and receive its pidfd; ``False`` if no owner."""
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl.settimeout(CONNECT_S)
        try:
            ctl.connect(CTL_SOCKET)
            ctl.sendall(json.dumps({"op": "hello", "pid": os.getpid()}).encode())
            data, fds, _, _ = socket.recv_fds(ctl, MAX_MESSAGE, 1)
        except OSError as exc:
            print(f"supervisor: no owner at {CTL_SOCKET}: {exc}", file=sys.stderr, flush=True)
            ctl.close()
            return False
        if not data or len(fds) != 1:
            ctl.close()
            return False
        ctl.settimeout(None)
        self.ctl, self.owner_fd = ctl, fds[0]
        self.peer = str(json.loads(data).get("socket_inode", ""))
        return True

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[None]:
        """While the imports run (seconds on a loaded machine), a thread ends this process as
        soon as the owner dies. It is gone before anything is forked."""
        assert self.ctl is not None
        stop_r, stop_w = os.pipe()
        ctl_fd, owner_fd = self.ctl.fileno(), self.owner_fd

        def watch() -> None:
            poller = select.poll()
            poller.register(stop_r, select.POLLIN)
            poller.register(owner_fd, select.POLLIN)
            poller.register(ctl_fd, select.POLLRDHUP)
            events = dict(poller.poll())
            if stop_r not in events and (owner_fd in events or ctl_fd in events):
                os._exit(0)

        thread = threading.Thread(target=watch, name="owner-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            os.write(stop_w, b"x")
            thread.join()
            os.close(stop_r)
            os.close(stop_w)
            # join() returns a little before the kernel thread itself is gone.
            deadline = time.monotonic() + 5.0
            while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
                time.sleep(0.001)

    def serve(self) -> int:
        assert self.ctl is not None
        self.poller.register(self.ctl.fileno(), select.POLLIN)
        self.poller.register(self.owner_fd, select.POLLIN)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                print("supervisor: lifetime cap reached", file=sys.stderr, flush=True)
                return 4
            events = dict(self.poller.poll(int(min(left, 1.0) * 1000) + 1))
            self.reap()
            if self.owner_fd in events:
                return 0  # the owner died
            if self.ctl.fileno() in events:
                try:
                    data, fds, _, _ = socket.recv_fds(self.ctl, MAX_MESSAGE, 1)
                except OSError:
                    data, fds = b"", []
                if not data:
                    return 0  # the owner closed the connection
                request = json.loads(data)
                if request.get("op") == "owner" and len(fds) == 1:
                    self.new_owner(fds[0])
                    continue
                for fd in fds:
                    os.close(fd)
                self.handle(request)

    def new_owner(self, pidfd: int) -> None:
        """Hand-over (a pod server gives this pod to another process): from now on the pod
        lives as long as the process of ``pidfd``, and the connection moves to it with this
        request. Refused unless the pod is clean and has never served a kernel (nothing of its
        owner's episodes may reach the next owner), or if the new owner has exited."""
        why = ""
        if self.spawned:
            why = f"the pod has served {self.spawned} kernel(s)"
        elif not self.clean:
            why = "the pod is not clean"
        elif _readable(pidfd):
            why = "the new owner has exited"
        if why:
            os.close(pidfd)
            self.send({"op": "owner", "ok": False, "error": why})
            return
        self.poller.unregister(self.owner_fd)
        os.close(self.owner_fd)
        self.owner_fd = pidfd
        self.poller.register(self.owner_fd, select.POLLIN)
        self.send({"op": "owner", "ok": True})

    def send(self, message: dict[str, object], fds: tuple[int, ...] = ()) -> None:
        assert self.ctl is not None
        payload = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.ctl, [payload], list(fds))
        else:
            self.ctl.sendall(payload)

    def handle(self, request: dict[str, object]) -> None:
        op = request.get("op")
        try:
            if op == "spawn":
                pidfd = self.spawn(request)
                try:
                    self.send({"op": op, "ok": True, "pid": self.kernel_pid}, (pidfd,))
                finally:
                    os.close(pidfd)
                return
            if op == "kill":
                self.kill_all()
                reply: dict[str, object] = {"status": self.kernel_status}
            elif op == "wipe":
                problems = self.wipe()
                self.clean = not problems
                reply = {"clean": self.clean, "problems": problems}
            elif op == "status":
                reply = {"pid": self.kernel_pid, "status": self.kernel_status}
            elif op == "count":
                reply = {"processes": len(_pids() - {1, os.getpid()})}
            else:
                reply = {"ok": False, "error": f"unknown request {op!r}"}
        except Exception as exc:
            self.clean = False
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.send({"op": op, "ok": True, **reply})

    # -- processes -----------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.kernel_pid:
                self.kernel_status = os.waitstatus_to_exitcode(status)

    def kill_all(self) -> None:
        """SIGKILL every process but the init and this one, and reap them all."""
        me = os.getpid()
        if _pids() - {1, me}:
            # kill(-1) as the kernel uid reaches every process of that uid in one go (a fork
            # bomb cannot outrun it); nothing else but init and this process may exist.
            os.seteuid(self.uid)
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                os.seteuid(0)
        deadline = time.monotonic() + KILL_S
        while True:
            self.reap()
            left = _pids() - {1, me}
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {sorted(left)[:10]} outlived SIGKILL")
            time.sleep(0.001)

    def spawn(self, request: dict[str, object]) -> int:
        if not self.clean:
            raise RuntimeError("the pod is not clean: wipe it first")
        if len(os.listdir("/proc/self/task")) != 1:
            raise RuntimeError("the supervisor has threads: a fork would not be safe")
        self.clean = False
        self.spawned += 1
        self.kernel_status = None
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._kernel_child(request, ready_w)  # never returns
        os.close(ready_w)
        self.kernel_pid = pid
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([ready_r], [], [], SPAWN_S)
            note = os.read(ready_r, 4096) if ready else b"timed out"
        finally:
            os.close(ready_r)
        if note != b"ok":
            os.close(pidfd)
            raise RuntimeError(f"the kernel failed to start: {note.decode(errors='replace')}")
        return pidfd

    def _kernel_child(self, request: dict[str, object], ready_w: int) -> None:
        """In the forked child: become the kernel. Never returns."""
        try:
            parent = os.getppid()
            os.setsid()
            if self.ctl is not None:
                os.close(self.ctl.detach())  # detach: a later GC must not close a reused fd
            os.closerange(3, ready_w)
            os.closerange(ready_w + 1, 1 << 16)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # The kernel is the process the OOM killer should pick, never this supervisor.
            with open("/proc/self/oom_score_adj", "w") as fh:
                fh.write("1000")
            import resource

            limit = request.get("data_limit")
            if isinstance(limit, int) and limit > 0:
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                last_cap = int(fh.read())
            for cap in range(last_cap + 1):
                _prctl(_PR_CAPBSET_DROP, cap)
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)  # clears every remaining capability
            _prctl(_PR_SET_NO_NEW_PRIVS, 1)
            # Cleared by the uid change above, so set after it.
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            # The uid change made the process non-dumpable, which would hide its own /proc
            # entries from it; only processes of its own uid could ptrace it either way.
            _prctl(_PR_SET_DUMPABLE, 1)
            if os.getppid() != parent:
                os._exit(1)
            os.umask(0o077)
            os.chdir(WORK_DIR)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            log = os.open(f"{IO_DIR}/kernel.log", flags, 0o600)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
            key = str(request["key"])
            connection = {
                "transport": "ipc",
                "ip": f"{IO_DIR}/k",
                "key": key,
                "signature_scheme": "hmac-sha256",
                "kernel_name": "",
                "shell_port": 1,
                "iopub_port": 2,
                "stdin_port": 3,
                "control_port": 4,
                "hb_port": 5,
            }
            fd = os.open(f"{IO_DIR}/kernel.json", flags, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(connection, fh)
            os.mkdir(f"{IO_DIR}/out", 0o700)
            env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
            env.update(
                PATH=os.environ.get("PATH", "/usr/bin:/bin"),
                HOME=WORK_DIR,
                TMPDIR="/tmp",
                IPYTHONDIR="/tmp/.ipython",
                ETPO_DATA_DIR=DATA_DIR,
                ETPO_OUT_DIR=f"{IO_DIR}/out",
                # What this interpreter really uses: a forked kernel cannot change it.
                PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED", "0"),
            )
            os.environ.clear()
            os.environ.update(env)
            seed = int(request.get("seed") or 0)
            import random

            random.seed(seed)
            numpy = sys.modules.get("numpy")
            if numpy is not None:
                numpy.random.seed(seed % 2**32)
            sys.path[0] = WORK_DIR  # as for `python -m ipykernel_launcher` started in /work
        except BaseException:
            os.write(ready_w, traceback.format_exc()[-3000:].encode())
            os._exit(1)
        os.write(ready_w, b"ok")
        os.close(ready_w)
        try:
            from kernel_app import SandboxKernelApp  # imported at start, from this directory

            app = SandboxKernelApp.instance()
            app.initialize(["-f", f"{IO_DIR}/kernel.json", *KERNEL_ARGS])
            app.start()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)

    # -- wipe ----------------------------------------------------------------------------

    def survey(self) -> None:
        """Record the writable mounts as the pod starts: what the kernel may write (emptied
        between kernels) and what it may not (must stay exactly as it is)."""
        with open("/proc/self/mountinfo") as fh:
            mounts = parse_mountinfo(fh.read())
        self.mount_table = [
            (str(m["point"]), str(m["fstype"]), bool(m["writable"])) for m in mounts
        ]
        for mount in mounts:
            point = str(mount["point"])
            if not mount["writable"] or mount["fstype"] == "proc":
                continue  # read-only, or process state that dies with the processes
            info = os.lstat(point)
            writable_by_kernel = info.st_uid == self.uid or (
                stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH
            )
            if mount["fstype"] == "mqueue" or writable_by_kernel:
                self.scratch[point] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
            else:
                self.fixed[point] = _fingerprint(point, _own_files(point))

    def wipe(self) -> list[str]:
        """Kill, remove and empty everything the kernel made; what could not be proven clean."""
        self.kill_all()
        problems: list[str] = []
        os.setegid(self.uid)
        os.seteuid(self.uid)
        try:
            for kind, ident in _sysvipc_ids():
                call = {"shm": _libc.shmctl, "sem": _libc.semctl, "msg": _libc.msgctl}[kind]
                args = (ident, 0, _IPC_RMID) if kind == "sem" else (ident, _IPC_RMID, None)
                if call(*args) != 0:
                    problems.append(f"{kind} {ident}: {os.strerror(ctypes.get_errno())}")
            for point, (mode, uid, _gid, mtime) in self.scratch.items():
                problems += _empty(point, owned=uid == self.uid)
                if uid == self.uid:
                    problems += _reset_root(point, mode, mtime)
        finally:
            os.seteuid(0)
            os.setegid(0)
        for point, (mode, uid, _gid, mtime) in self.scratch.items():
            if uid != self.uid:
                problems += _reset_root(point, mode, mtime)
        return problems + self.verify()

    def verify(self) -> list[str]:
        """What makes the pod not provably clean (empty: it is clean)."""
        problems = []
        self.reap()
        left = _pids() - {1, os.getpid()}
        if left:
            problems.append(f"processes left: {sorted(left)[:10]}")
        if _sysvipc_count():
            problems.append(f"SysV IPC objects left: {_sysvipc_count()}")
        if _foreign_unix_sockets(self.peer):
            problems.append(f"unix sockets left: {_foreign_unix_sockets(self.peer)}")
        with open("/proc/self/mountinfo") as fh:
            table = [
                (str(m["point"]), str(m["fstype"]), bool(m["writable"]))
                for m in parse_mountinfo(fh.read())
            ]
        if table != self.mount_table:
            problems.append("the mount table changed")
        for point, (mode, uid, gid, mtime) in self.scratch.items():
            info = os.lstat(point)
            if (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns) != (
                mode,
                uid,
                gid,
                mtime,
            ):
                problems.append(f"{point}: its root's mode, owner or times differ")
            fs = os.statvfs(point)
            if fs.f_files and (fs.f_files - fs.f_ffree != 1 or fs.f_blocks != fs.f_bfree):
                used = (fs.f_files - fs.f_ffree, fs.f_blocks - fs.f_bfree)
                problems.append(f"{point}: {used[0]} inodes and {used[1]} blocks in use")
        os.seteuid(self.uid)
        try:
            # As the kernel uid: the roots it owns are closed to uid 0 without CAP_DAC_OVERRIDE.
            for point, (_mode, uid, _gid, _mtime) in self.scratch.items():
                if os.listdir(point):
                    problems.append(f"{point}: not empty")
                if uid == self.uid and os.listxattr(point, follow_symlinks=False):
                    problems.append(f"{point}: extended attributes left")
        finally:
            os.seteuid(0)
        for point, expected in self.fixed.items():
            try:
                if _fingerprint(point, _own_files(point)) != expected:
                    problems.append(f"{point}: changed")
            except OSError as exc:
                problems.append(f"{point}: {exc}")
        return problems


def _own_files(point: str) -> frozenset[str]:
    """This supervisor's own files in mount ``point`` (the kernel cannot reach them)."""
    return frozenset({os.path.basename(LOG)}) if point == CTL_DIR else frozenset()


def _empty(point: str, owned: bool) -> list[str]:
    """Remove everything under ``point`` (a mount root) without following any symlink.
    ``owned``: the root belongs to the kernel uid (else it is a sticky world-writable one)."""
    try:
        root_fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        return [f"{point}: {exc}"]
    try:
        if owned:
            os.fchmod(root_fd, 0o700)
        _empty_dir(root_fd)
    except (OSError, RecursionError) as exc:
        return [f"{point}: {exc!r}"]
    finally:
        os.close(root_fd)
    return []


def _empty_dir(dir_fd: int) -> None:
    for name in os.listdir(dir_fd):
        try:
            os.unlink(name, dir_fd=dir_fd)
            continue
        except IsADirectoryError:
            pass
        except FileNotFoundError:
            continue
        # A directory (unlink removes a symlink), which nothing alive could swap for a link
        # meanwhile; the code may have left it without permissions for its owner.
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            _empty_dir(fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)


def _reset_root(point: str, mode: int, mtime_ns: int) -> list[str]:
    try:
        for name in os.listxattr(point, follow_symlinks=False):
            os.removexattr(point, name, follow_symlinks=False)
        if stat.S_ISDIR(mode):
            os.chmod(point, stat.S_IMODE(mode), follow_symlinks=False)
        os.utime(point, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
    except OSError as exc:
        return [f"{point}: {exc}"]
    return []


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return Supervisor(int(config["uid"]), float(config["lifetime"])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
