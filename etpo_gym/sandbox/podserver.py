"""A pod server: Docker sandbox pods kept ready for the other processes of this machine.

A pod's cold start is the container's start and its supervisor's imports (numpy, pandas, scipy,
scikit-learn, ipykernel: about a CPU-second, ``benchmarks/env_throughput.py``). Inside one
process that cost is paid once, but every new process (a CLI call, a leaderboard's worker, a
test, a Ray actor) pays it again. ``etpo-gym sandbox serve`` keeps ``pods`` pods ready, and a
Docker backend (``pod_server="auto"``, the default) takes one from it before it starts its own.

**Hand-over.** A taken pod becomes the taker's own, as if it had started it:

1. the taker connects to the server's ``SOCK_SEQPACKET`` socket (a root-only directory; the
   server also checks that the peer's uid is its own) and names the settings it wants and its
   own host directory;
2. the server takes a pod whose settings are equal, obtains the taker's pidfd from the kernel
   (``SO_PEERPIDFD``, so no pid can be reused in between) and sends it to the pod's supervisor
   (``owner``): from then on the pod lives exactly as long as the taker;
3. it moves the pod's host directory into the taker's (one ``rename``; the bind mounts follow),
   sends the taker the pod's facts with its supervisor connection and its init's pidfd, and
   closes its own copies. It then starts a replacement.

If the taker dies at any point after step 2, the supervisor sees its pidfd and ends the pod; if
the server dies before step 3, the connection closes and the supervisor ends it too; ready pods
end with the server. A pod is handed over only clean and before it ever ran a kernel, so nothing
of another process's episodes can be in it. The pod's container keeps the server's labels:
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
import select
import signal
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.sandbox.engine import DIR_PREFIX
from etpo_gym.sandbox.pod import MAX_MESSAGE, Pod, PodSettings

log = logging.getLogger("etpo_gym.sandbox")

ENV_VAR = "ETPO_GYM_POD_SERVER"
DEFAULT_SOCKET = "/run/etpo-gym/pods.sock"
OFF = ("off", "none", "")
#: Seconds a taker waits for the server (a hand-over takes milliseconds).
TAKE_TIMEOUT = 5.0
_SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux 6.5
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


def take_pod(path: str, settings: PodSettings, root: Path, uid: int | None = None) -> Pod | None:
    """Take a ready pod from the server at ``path`` into ``root`` (this process's pod directory);
    ``None`` if there is no server, none ready, or other settings (logged at debug level).
    ``uid``: the kernel uid the caller insists on (``None``: the server's)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds: list[int] = []
    try:
        conn.settimeout(TAKE_TIMEOUT)
        conn.connect(path)
        request = {"op": "take", "settings": _wanted(settings), "root": str(root), "uid": uid}
        conn.sendall(json.dumps(request).encode())
        data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 2)
        reply = json.loads(data or b"{}")
    except (OSError, ValueError) as exc:
        for fd in fds:
            os.close(fd)
        log.debug("pod server %s: %s", path, exc)
        return None
    finally:
        conn.close()
    if not reply.get("ok") or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        log.debug("pod server %s: %s", path, reply.get("error", "no pod"))
        return None
    try:
        mine = dataclasses.replace(settings, uid=int(reply["pod"]["uid"]))
        return Pod.adopt(mine, root, reply["pod"], fds[0], fds[1])
    except (KeyError, TypeError, ValueError, SandboxError) as exc:
        log.warning("pod server %s handed over an unusable pod: %s", path, exc)
        return None


def server_status(path: str) -> dict[str, Any]:
    """What the server at ``path`` says of itself: ``ready`` (pods), ``handed_over``, ``pid``,
    ``settings``. Raises :class:`SandboxError` if none answers there."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(TAKE_TIMEOUT)
        conn.connect(path)
        conn.sendall(json.dumps({"op": "status"}).encode())
        reply = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
    except (OSError, ValueError) as exc:
        raise SandboxError(f"no pod server answers at {path}: {exc}") from None
    finally:
        conn.close()
    if not reply.get("ok"):
        raise SandboxError(f"the pod server at {path} refused: {reply.get('error')}")
    return reply


def _peer(conn: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, pidfd)`` of the process at the other end of ``conn``."""
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    try:
        pidfd = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
    except OSError:
        # Older kernels: open it by pid, then check the peer still holds its end (a pid reused
        # after the peer's death would belong to a process that does not).
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(conn, select.POLLRDHUP)
        if poller.poll(0):
            os.close(pidfd)
            raise OSError("the peer went away") from None
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
        self._stopped = threading.Event()

    def open(self) -> None:
        """Listen, and start the pods (in the background)."""
        directory = Path(self.path).parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # left by a server that died
            else:
                listener.close()
                raise SandboxError(f"a pod server already answers at {self.path}")
            finally:
                probe.close()
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
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
            self.backend.retire_old()

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
        conn.settimeout(2.0)
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
        try:
            pod.hand_over(pidfd)
        except SandboxError as exc:
            self._reply(conn, error=f"the hand-over failed: {exc}")
            self.backend._retire(pod)
            return
        # From here the pod is the taker's: it ends when the taker does, whatever happens here.
        try:
            target = root / pod.name
            os.rename(pod.root, target)
            facts = pod.facts()
            socket.send_fds(
                conn, [json.dumps({"ok": True, "pod": facts}).encode()], list(pod.descriptors())
            )
            self.handed_over += 1
        except (OSError, SandboxError) as exc:
            log.warning("pod server: handing %s over failed (%s): it ends", pod.name, exc)
            with contextlib.suppress(OSError):
                pod.release()
            return
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
