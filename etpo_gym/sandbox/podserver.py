"""A pod server: Docker sandbox pods kept ready for the other processes of this machine.

A pod's cold start is the container's start and its supervisor's imports (numpy, pandas, scipy,
scikit-learn, ipykernel: about a CPU-second, ``benchmarks/env_throughput.py``). Inside one
process that cost is paid once, but every new process (a CLI call, a leaderboard's worker, a
test, a Ray actor) pays it again. ``etpo-gym sandbox serve`` keeps ``pods`` pods ready, and a
Docker backend (``pod_server="auto"``, the default) takes one from it before it starts its own.

**Hand-over.** A taken pod becomes the taker's own, as if it had started it:

1. the taker connects to the server's ``SOCK_SEQPACKET`` socket (mode 0600, in a directory only
   the server's uid can write), believes it only if it runs as root or as the taker's uid, and
   names the settings it wants and its own host directory; the server checks that the peer's uid
   is its own;
2. the server takes a ready pod whose settings are equal and moves the pod's host directory into
   the taker's (one ``rename``; the bind mounts follow). If that fails the pod stays ready;
3. it obtains the taker's pidfd from the kernel (``SO_PEERPIDFD``, so no pid can be reused in
   between) and sends it to the pod's supervisor (``owner``), which accepts it only if the pod
   is clean and has never forked a kernel: from then on the pod lives exactly as long as the
   taker;
4. it sends the taker the pod's facts with its supervisor connection and its init's pidfd, and
   closes its own copies; the taker checks the facts against the engine. The server then starts
   a replacement.

If the taker dies at any point after step 3, the supervisor sees its pidfd and ends the pod; if
the server dies before step 4, the connection closes and the supervisor ends it too; ready pods
end with the server. The pod's container keeps the server's labels:
:func:`etpo_gym.sandbox.engine.reap_orphans` leaves running pods alone (each one's supervisor
watches its owner) and removes only stopped ones.

When no server answers, none is ready, or the settings differ, the taker starts its own pod as
it would without a server: a server can make a start faster, never change what runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import select
import signal
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.sandbox.engine import DIR_PREFIX
from etpo_gym.sandbox.pod import MAX_MESSAGE, Pod, PodSettings

log = logging.getLogger("etpo_gym.sandbox")

ENV_VAR = "ETPO_GYM_POD_SERVER"
DEFAULT_SOCKET = "/run/etpo-gym/pods.sock"
OFF = ("off", "none", "")
#: Seconds a taker waits for the server (a hand-over takes milliseconds; the server's own waits
#: are shorter, so a slow server refuses before its taker gives up).
TAKE_TIMEOUT = 30.0
#: Seconds the server waits for a taker's request and for a supervisor's answer to ``owner``.
REQUEST_S = 10.0
HAND_OVER_S = 10.0
# Linux 6.5 and later; 77 is its number in the generic socket options (x86, arm, riscv, s390).
_SO_PEERPIDFD = getattr(
    socket,
    "SO_PEERPIDFD",
    77 if platform.machine() in ("x86_64", "aarch64", "riscv64", "s390x") else None,
)
#: Settings a taken pod must share with the taker's (labels and timeouts do not change a pod).
_COMPARED = (
    "image",
    "memory_limit",
    "cpus",
    "pids_limit",
    "tmpfs_size",
    "output_size",
    "shm_size",
    "lifetime",
)


def resolve(setting: str | None) -> str | None:
    """The socket path a ``pod_server`` setting names, or ``None`` (start every pod here).

    ``"auto"``: ``$ETPO_GYM_POD_SERVER`` if set (``off`` disables), else ``DEFAULT_SOCKET`` if it
    exists; ``"off"``/``None``: none; anything else is a path.
    """
    if setting is None or setting.lower() in OFF:
        return None
    if setting != "auto":
        return setting
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in OFF else value
    return DEFAULT_SOCKET if os.path.exists(DEFAULT_SOCKET) else None


def _wanted(settings: PodSettings) -> dict[str, Any]:
    return {key: getattr(settings, key) for key in _COMPARED}


def _peer_cred(conn: socket.socket) -> tuple[int, int]:
    """``(pid, uid)`` of the process at the other end of ``conn`` (``SO_PEERCRED``)."""
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def _connect(path: str, timeout: float) -> socket.socket:
    """A connection to the server socket at ``path``, however long the path (through a
    descriptor of its directory: ``AF_UNIX`` paths end at 108 bytes)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(timeout)
        directory = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY)
        try:
            conn.connect(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
        finally:
            os.close(directory)
        # Only a server of this uid or root is believed: it hands over a process's sandbox.
        _, uid = _peer_cred(conn)
        if uid not in (0, os.geteuid()):
            raise PermissionError(f"the server at {path} runs as uid {uid}")
    except BaseException:
        conn.close()
        raise
    return conn


class _NoPod(Exception):
    """The server answered, without a pod (none ready, other settings, refused)."""


#: Per server path: until when (monotonic) this process does not ask it again, after it did not
#: answer in time (a stuck server must not add its timeout to every pod start).
_QUIET_UNTIL: dict[str, float] = {}
QUIET_S = 300.0


def take_pod(
    path: str, settings: PodSettings, root: Path, client: Any, uid: int | None = None
) -> Pod | None:
    """Take a ready pod from the server at ``path`` into ``root`` (this process's pod directory);
    ``None`` if there is no server, none ready, other settings, or anything went wrong (logged;
    the caller starts its own pod). ``uid``: the kernel uid the caller insists on (``None``: the
    server's); ``client``: a Docker client, to check what the server says against the engine."""
    if time.monotonic() < _QUIET_UNTIL.get(path, 0.0):
        return None
    fds: list[int] = []
    try:
        with _connect(path, TAKE_TIMEOUT) as conn:
            request = {"op": "take", "settings": _wanted(settings), "root": str(root), "uid": uid}
            conn.sendall(json.dumps(request).encode())
            data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 2)
        reply = json.loads(data or b"{}")
        if not isinstance(reply, dict) or not reply.get("ok") or len(fds) != 2:
            raise _NoPod(reply.get("error", "no pod") if isinstance(reply, dict) else reply)
        facts = reply["pod"]
        mine = dataclasses.replace(settings, uid=int(facts["uid"]))
    except Exception as exc:
        for fd in fds:
            os.close(fd)
        if isinstance(exc, TimeoutError):
            _QUIET_UNTIL[path] = time.monotonic() + QUIET_S
            log.warning(
                "pod server %s did not answer in %g s: not asked for %g s",
                path,
                TAKE_TIMEOUT,
                QUIET_S,
            )
        elif isinstance(exc, (_NoPod, FileNotFoundError, ConnectionRefusedError)):
            log.debug("pod server %s: %s", path, exc)  # none there, none ready, other settings
        else:
            log.warning("pod server %s: %r", path, exc)
        return None
    try:
        return Pod.adopt(mine, root, facts, fds[0], fds[1], client)
    except SandboxError as exc:
        log.warning("pod server %s: %s", path, exc)
        return None


def server_status(path: str) -> dict[str, Any]:
    """What the server at ``path`` says of itself: ``ready`` (pods), ``handed_over``, ``pid``,
    ``settings``. Raises :class:`SandboxError` if none answers there."""
    try:
        with _connect(path, TAKE_TIMEOUT) as conn:
            conn.sendall(json.dumps({"op": "status"}).encode())
            reply = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
    except (OSError, ValueError) as exc:
        raise SandboxError(f"no pod server answers at {path}: {exc}") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        error = reply.get("error") if isinstance(reply, dict) else reply
        raise SandboxError(f"the pod server at {path} refused: {error!r}")
    return reply


def _peer(conn: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, pidfd)`` of the process at the other end of ``conn``."""
    pid, uid = _peer_cred(conn)
    pidfd = -1
    if _SO_PEERPIDFD is not None:
        with contextlib.suppress(OSError):
            pidfd = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
    if pidfd < 0:
        # Older kernels: open it by pid, then check the peer still holds its end (a pid reused
        # after the peer's death would belong to a process that does not).
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(conn, select.POLLRDHUP)
        if poller.poll(0):
            os.close(pidfd)
            raise OSError("the peer went away")
    return pid, uid, pidfd


class PodServer:
    """Keeps ``pods`` pods of one set of settings ready and hands them over (module docstring).

    Args:
        path: the socket path (its directory is made root-only if it does not exist).
        pods: pods kept ready.
        **settings: the :class:`~etpo_gym.sandbox.docker.DockerBackend` settings of every pod
            (``memory_limit``, ``cpus``, ``image``, ...); a taker gets a pod only if its own
            settings are equal.
    """

    def __init__(self, path: str = DEFAULT_SOCKET, pods: int = 2, **settings: Any) -> None:
        from etpo_gym.sandbox.docker import DockerBackend

        if not isinstance(pods, int) or not 1 <= pods <= 16:
            raise ConfigError(f"pod server pods={pods!r} is not accepted: use an integer in 1..16")
        for key in ("reuse", "pod_server"):
            if key in settings:
                raise ConfigError(f"pod server setting {key!r} is not accepted: it is fixed")
        self.path = path
        self.backend = DockerBackend(pods=pods, reuse=True, pod_server=None, **settings)
        self.backend.serves_others = True
        self.handed_over = 0
        self._listener: socket.socket | None = None
        self._stop_r, self._stop_w = os.pipe()

    def open(self) -> None:
        """Listen, and start the pods (in the background). Raises :class:`SandboxError` if the
        socket's directory could let another user replace the socket, or a server answers
        there already."""
        directory = Path(self.path).parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
        info = os.lstat(directory)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise SandboxError(
                f"the pod server's socket directory {directory} must be a directory of uid "
                f"{os.geteuid()} that no group or other user can write (mode 0700 or 0755)"
            )
        with contextlib.suppress(OSError):
            probe = _connect(self.path, 5.0)
            probe.close()
            raise SandboxError(f"a pod server already answers at {self.path}")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # left by a server that died
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        old = os.umask(0o177)
        try:
            # Through the directory's descriptor: AF_UNIX paths end at 108 bytes.
            listener.bind(f"/proc/self/fd/{fd}/{os.path.basename(self.path)}")
        except OSError as exc:
            listener.close()
            raise SandboxError(f"the pod server cannot listen at {self.path}: {exc}") from exc
        finally:
            os.umask(old)
            os.close(fd)
        listener.listen(16)
        self._listener = listener
        self.backend.open()
        self.backend.fill()

    def serve(self) -> None:
        """Answer takers until :meth:`stop`; ends stale ready pods as it goes."""
        assert self._listener is not None
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            events = dict(poller.poll(10_000))
            if self._stop_r in events:
                return
            if self._listener.fileno() in events:
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with conn:
                    try:
                        self._answer(conn)
                    except Exception as exc:  # a taker's bad request never ends the server
                        log.warning("pod server: a request failed: %r", exc)
            try:
                self.backend.retire_old()  # in the background: answering never waits for it
            except Exception as exc:
                log.warning("pod server: replacing old pods failed: %r", exc)

    def stop(self) -> None:
        """Make :meth:`serve` return (any thread, or a signal handler)."""
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")

    def close(self) -> None:
        """Stop listening and end every ready pod (handed-over pods are their takers'). Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.backend.close()
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_r = self._stop_w = -1

    def __enter__(self) -> PodServer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one taker ---------------------------------------------------------------------------

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_S)
        try:
            pid, uid, pidfd = _peer(conn)
        except OSError:
            return
        try:
            if uid != os.geteuid():
                self._reply(
                    conn, error=f"uid {uid} may not take pods from a server of uid {os.geteuid()}"
                )
                return
            try:
                request = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
            except ValueError:
                request = None
            if isinstance(request, dict) and request.get("op") == "status":
                self._status(conn)
                return
            error = self._refusal(request, pid, uid)
            if error:
                self._reply(conn, error=error)
                return
            pod = self.backend.take_ready()
            if pod is None:
                self._reply(conn, error="no pod is ready")
                return
            self._hand_over(conn, pod, pidfd, Path(request["root"]))
        finally:
            os.close(pidfd)

    def _refusal(self, request: Any, pid: int, uid: int) -> str:
        """Why this request is refused ('' if it is not)."""
        if not isinstance(request, dict) or request.get("op") != "take":
            return "unknown request"
        assert self.backend.uid is not None
        mine = _wanted(self.backend._settings())
        theirs = request.get("settings")
        if theirs != mine:
            return f"other settings: this server's pods have {mine}"
        if request.get("uid") not in (None, self.backend.uid):
            return f"other kernel uid: this server's pods run kernels as {self.backend.uid}"
        root = Path(str(request.get("root", "")))
        try:
            info = os.lstat(root)
        except OSError:
            return f"no directory {root}"
        # The taker's own pod directory (engine.DIR_PREFIX, its pid): a rename target only.
        if (
            not root.name.startswith(f"{DIR_PREFIX}{pid}-")
            or not os.path.isabs(root)
            or not root.is_dir()
            or root.is_symlink()
            or info.st_uid != uid
        ):
            return f"{root} is not the taker's pod directory"
        assert self.backend.root is not None
        if info.st_dev != os.stat(self.backend.root).st_dev:
            # A rename cannot move a pod there: the taker starts its own instead.
            return f"{root} is on another file system than this server's {self.backend.root}"
        return ""

    def _hand_over(self, conn: socket.socket, pod: Pod, pidfd: int, root: Path) -> None:
        # The directory first (a rename may fail, e.g. across mounts): until the owner changes,
        # a refusal puts the pod back unharmed.
        home, target = pod.root, root / pod.name
        try:
            os.rename(home, target)
        except OSError as exc:
            self.backend.put_back(pod)
            self._reply(conn, error=f"cannot move a pod into {root}: {exc}")
            return
        pod.move_to(root)
        try:
            pod.hand_over(pidfd, timeout=HAND_OVER_S)
        except SandboxError as exc:
            with contextlib.suppress(OSError):
                os.rename(target, home)
                pod.move_to(home.parent)
            self._reply(conn, error=f"the hand-over failed: {exc}")
            self.backend.retire_later(pod)
            return
        # From here the pod is the taker's: it ends when the taker does, whatever happens here.
        try:
            socket.send_fds(
                conn,
                [json.dumps({"ok": True, "pod": pod.facts()}).encode()],
                list(pod.descriptors()),
            )
            self.handed_over += 1
        except (OSError, SandboxError) as exc:
            # The taker has no connection: the supervisor sees it close below and ends the pod.
            log.warning("pod server: handing %s over failed (%s): it ends", pod.name, exc)
        pod.release()

    def _status(self, conn: socket.socket) -> None:
        reply = {
            "ok": True,
            "pid": os.getpid(),
            "ready": self.backend.ready_count(),
            "handed_over": self.handed_over,
            "settings": _wanted(self.backend._settings()),
            "uid": self.backend.uid,
        }
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode())

    @staticmethod
    def _reply(conn: socket.socket, error: str) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"ok": False, "error": error}).encode())


def main(path: str, pods: int, settings: dict[str, Any]) -> int:
    """``etpo-gym sandbox serve``: run a pod server until SIGINT or SIGTERM."""
    server = PodServer(path, pods, **settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    try:
        server.open()
        print(f"etpo-gym sandbox serve: {pods} pods ready soon at {path}", flush=True)
        server.serve()
    finally:
        server.close()
    print(f"etpo-gym sandbox serve: stopped after handing over {server.handed_over} pods")
    return 0
