"""A control group per local kernel: total memory and process count of the kernel *and* its children.

Rlimits bound one process each (``RLIMIT_AS``) or one user (``RLIMIT_NPROC``); a cgroup bounds the
whole tree and lets the host find and kill every process in it. Both cgroup versions are used:

* **v1** (a ``cgroup`` mount per controller): the ``memory`` and ``pids`` hierarchies, each group
  made under the owner's own group of that hierarchy;
* **v2** (one ``cgroup2`` mount): a child of the owner's group, which needs ``memory`` and ``pids``
  enabled in the owner's ``cgroup.subtree_control`` (possible when the owner's group is the root
  or has been delegated with the controllers on; otherwise no cgroup is used).

The new process joins by writing ``0`` to ``cgroup.procs`` between ``fork`` and ``exec``
(:meth:`Cgroup.join_fds` are opened by the owner and handed to the child), so it cannot run a
single instruction outside the group. Groups are named ``etpo-gym-<owner pid>.<start>-<n>`` so
that :func:`reap_stale` can remove those of owners that died.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from etpo_gym.sandbox.scratch import owner_alive, owner_tag

PREFIX = "etpo-gym-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+\.\d+)-\d+$")
_counter = itertools.count(1)


@dataclass
class _Mount:
    version: int
    path: Path  # the mount point
    controllers: frozenset[str]


def _mounts() -> list[_Mount]:
    """cgroup file systems of this mount namespace, from ``/proc/self/mountinfo``."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        if rest[0] == "cgroup2":
            found.append(_Mount(2, point, frozenset()))
        elif rest[0] == "cgroup":
            found.append(_Mount(1, point, frozenset(rest[2].split(","))))
    return found


def _own_groups() -> dict[str, str]:
    """This process's group per v1 controller (``"memory"`` → ``"/a/b"``) and ``""`` for v2."""
    groups: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            groups[""] = path
        for name in controllers.split(","):
            groups[name] = path
    return groups


@dataclass
class Cgroup:
    """One group (v2) or one group per controller (v1) holding a kernel and its descendants.

    Attributes:
        version: 1 or 2.
        dirs: the group directories (v1: memory then pids; v2: one).
    """

    version: int
    dirs: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, memory_bytes: int | None, pids: int | None) -> Cgroup | None:
        """A new group with these limits, or ``None`` when this process cannot make one."""
        mounts = _mounts()
        own = _own_groups()
        name = f"{PREFIX}{owner_tag()}-{next(_counter)}"
        v1 = {c: m for m in mounts if m.version == 1 for c in m.controllers}
        if "memory" in v1 and "pids" in v1 and "memory" in own and "pids" in own:
            parents = [_inside(v1[c].path, own[c]) for c in ("memory", "pids")]
            group = cls(1)
        else:
            v2 = [m for m in mounts if m.version == 2]
            if not v2 or "" not in own:
                return None
            parent = _inside(v2[0].path, own[""])
            if not _enable_v2_controllers(parent):
                return None
            parents = [parent]
            group = cls(2)
        try:
            for parent in parents:
                directory = parent / name
                directory.mkdir(mode=0o755)
                group.dirs.append(directory)
            group._set_limits(memory_bytes, pids)
        except OSError:
            group.remove()
            return None
        return group

    def _set_limits(self, memory_bytes: int | None, pids: int | None) -> None:
        if self.version == 1:
            memory, pid_dir = self.dirs
            if memory_bytes is not None:
                _write(memory / "memory.limit_in_bytes", memory_bytes)
                # With swap accounting on, memory+swap gets the same cap: no escape into swap.
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    _write(memory / "memory.memsw.limit_in_bytes", memory_bytes)
            if pids is not None:
                _write(pid_dir / "pids.max", pids)
        else:
            (group,) = self.dirs
            if memory_bytes is not None:
                _write(group / "memory.max", memory_bytes)
                if (group / "memory.swap.max").exists():
                    _write(group / "memory.swap.max", 0)
            if pids is not None:
                _write(group / "pids.max", pids)

    def join_fds(self) -> list[int]:
        """Descriptors of ``cgroup.procs`` (one per group) for a child to write ``0`` to.

        The caller passes them to the child (``pass_fds``) and closes its copies after the fork.
        """
        fds = []
        try:
            for directory in self.dirs:
                fds.append(os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def pids(self) -> list[int]:
        """Processes now in the group (all levels, v1 included)."""
        found: set[int] = set()
        for directory in self.dirs:
            for procs in directory.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in procs.read_text().split())
        return sorted(found)

    def kill(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group until it is empty. Returns whether it is."""
        if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", 1)
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def oom_kills(self) -> int:
        """How many processes of the group the kernel's OOM killer has killed."""
        if not self.dirs:
            return 0
        if self.version == 1:
            path, key = self.dirs[0] / "memory.oom_control", "oom_kill"
        else:
            path, key = self.dirs[0] / "memory.events", "oom_kill"
        try:
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self, timeout: float = 5.0) -> bool:
        """Kill what is left and remove the group directories. Returns whether they are gone."""
        self.kill(timeout)
        deadline = time.monotonic() + timeout
        remaining = []
        for directory in self.dirs:
            # Processes just killed leave the group when their parent reaps them: retry a while.
            while True:
                try:
                    _remove_group(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        remaining.append(directory)
                        break
                    time.sleep(0.02)
        self.dirs = remaining
        return not remaining


def _inside(mount: Path, group: str) -> Path:
    return mount / group.lstrip("/")


def _enable_v2_controllers(parent: Path) -> bool:
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    missing = [c for c in ("memory", "pids") if c not in enabled]
    if not missing:
        return True
    try:
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    except OSError:
        # Busy (the owner's group holds processes and is not the root) or not delegated.
        return False
    return True


def _write(path: Path, value: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _remove_group(directory: Path) -> None:
    """rmdir a group and any groups the code made inside it (deepest first)."""
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            sub.rmdir()
    directory.rmdir()


def reap_stale() -> int:
    """Kill the processes of, and remove, groups under this process's own groups whose owner has
    died. Returns how many groups were removed."""
    own = _own_groups()
    parents: set[Path] = set()
    for mount in _mounts():
        if mount.version == 2 and "" in own:
            parents.add(_inside(mount.path, own[""]))
        for controller in ("memory", "pids"):
            if mount.version == 1 and controller in mount.controllers and controller in own:
                parents.add(_inside(mount.path, own[controller]))
    removed = 0
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            match = _NAME.match(name)
            if match is None or owner_alive(match.group(1)):
                continue
            group = Cgroup(2 if (parent / "cgroup.controllers").exists() else 1, [parent / name])
            if group.remove(timeout=1.0):
                removed += 1
    return removed
