"""The Docker engine as the sandbox uses it: connecting, ownership labels, orphan reaping.

Shared by the Docker backend (``docker.py``) and the image builder (``image.py``); imports
neither, so the sandbox package has no import circle.

Every container and volume the sandbox makes carries the label ``etpo-gym.sandbox`` plus its
owner's pid, process start time and host name. :func:`reap_orphans` removes those whose owner died
without closing (``kill -9``); resources of live owners and of other hosts are left alone, and so
are running pods of a pod server (they may belong to another process now, and end with it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from etpo_gym.errors import EngineUnavailable
from etpo_gym.sandbox.files import remove_tree

LABEL = "etpo-gym.sandbox"
LABEL_OWNER_PID = "etpo-gym.owner-pid"
LABEL_OWNER_START = "etpo-gym.owner-start"
LABEL_OWNER_HOST = "etpo-gym.owner-host"
LABEL_OWNER_PARENT = "etpo-gym.owner-parent"  # lets a test session find its workers' leftovers
LABEL_INSTANCE = "etpo-gym.instance"  # one sandbox object
#: A pod server's pod: it may have been handed to another process (``podserver.py``), so its
#: labels name an owner that is not necessarily its owner now.
LABEL_POD_SERVER = "etpo-gym.pod-server"
#: Host directories of the Docker backend: ``<prefix><owner pid>-<owner start>-<random>``.
DIR_PREFIX = "etpo-gym-docker-"
_DIR_NAME = re.compile(rf"^{re.escape(DIR_PREFIX)}(\d+)-(\d+)-")


def start_time(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot), or ``None`` if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


def owner_labels() -> dict[str, str]:
    """The labels that name this process as the owner of a container or volume."""
    pid = os.getpid()
    return {
        LABEL: "1",
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: start_time(pid) or "0",
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_OWNER_PARENT: str(os.getppid()),
    }


def owner_dead(pid: int, start: str) -> bool:
    """Whether the owner process is gone (or its pid now belongs to another process)."""
    now = start_time(pid)
    return now is None or (start not in ("0", now))


def orphaned(labels: Mapping[str, str]) -> bool:
    """Whether a resource with these labels belongs to a dead owner on this host."""
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return False  # another machine's (or container's) resources: not ours to judge
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return True
    return owner_dead(pid, labels.get(LABEL_OWNER_START, "0"))


def engine_address() -> tuple[str, str]:
    """``(address, socket path)`` of the local engine; :class:`EngineUnavailable` for a remote
    ``DOCKER_HOST`` (the sandbox talks to kernels through socket files on this machine)."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        raise EngineUnavailable(
            f"DOCKER_HOST={host} is not a local unix socket: the sandbox talks to its kernels "
            "through socket files, so the engine must run on this machine"
        )
    address = host or "unix:///var/run/docker.sock"
    return address, address.removeprefix("unix://")


def connect_engine(timeout: int = 60) -> Any:
    """A Docker SDK client on the local engine, or :class:`EngineUnavailable` saying why not."""
    try:
        import docker
    except ImportError:
        raise EngineUnavailable(
            "the docker Python package is not installed (pip install docker)"
        ) from None
    address, path = engine_address()
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError as exc:
        is_socket, why = False, exc.strerror or type(exc).__name__
    else:
        why = "not a socket"
    if not is_socket:
        # Checked before docker-py is asked: its failed connect leaves a socket unclosed.
        raise EngineUnavailable(f"the Docker engine does not answer ({address}): {path}: {why}")
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise EngineUnavailable(f"the Docker engine does not answer ({address}): {first}") from exc
    return client


def reap_orphans(client: Any = None) -> int:
    """Remove sandbox containers, volumes and host directories whose owner process died.

    Only resources labelled by this host are judged; those of live owners are left alone.
    Returns how many were removed.
    """
    import docker.errors

    own_client = client is None
    client = client or connect_engine()
    removed = 0
    try:
        for container in client.containers.list(
            all=True, ignore_removed=True, filters={"label": LABEL}
        ):
            if container.labels.get(LABEL_POD_SERVER) and container.status == "running":
                continue  # its supervisor watches its owner, whoever that is now
            if orphaned(container.labels):
                # NotFound: gone meanwhile; APIError: e.g. its removal is already in progress.
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)
                    removed += 1
        for volume in client.volumes.list(filters={"label": LABEL}):
            if orphaned(volume.attrs.get("Labels") or {}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    volume.remove(force=True)
                    removed += 1
    finally:
        if own_client:
            client.close()
    for entry in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        match = _DIR_NAME.match(entry.name)
        if match and owner_dead(int(match.group(1)), match.group(2)):
            remove_tree(entry)
            removed += 1
    return removed


_reaped = False
_reap_lock = threading.Lock()


def reap_once(client: Any) -> None:
    """:func:`reap_orphans`, the first time it is asked for in this process."""
    global _reaped
    with _reap_lock:
        if not _reaped:
            _reaped = True
            reap_orphans(client)


def list_resources(
    owner_pid: int | None = None, parent_pid: int | None = None, instance: str | None = None
) -> list[str]:
    """Labelled sandbox containers and volumes, as ``"container NAME"`` / ``"volume NAME"``.

    With ``owner_pid``: those made by that process; with ``parent_pid``: by its child processes;
    with ``instance``: by the sandbox whose ``instance`` it is.
    """
    client = connect_engine()
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
            for c in client.containers.list(
                all=True, ignore_removed=True, filters={"label": selector}
            )
        ]
        names += [f"volume {v.name}" for v in client.volumes.list(filters={"label": selector})]
        return names
    finally:
        client.close()
