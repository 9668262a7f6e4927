"""Scratch directories of local sandboxes: made, removed and reaped without trusting their content.

Everything under a sandbox directory may have been written by the agent's code: symlinks to ``/``,
directories without permissions, FIFOs, sockets, files of other owners. Removal therefore walks
the tree through directory file descriptors opened with ``O_NOFOLLOW`` (a symlink is unlinked,
never followed), gives each directory back its owner's permissions before emptying it, and never
raises: what cannot be removed is left, and the next reaping tries again.

A directory is named ``PREFIX<pid>.<start>-<random>`` after its owner, where ``start`` is the
owner's start time in clock ticks since boot (``/proc/PID/stat`` field 22), so that a recycled
pid does not keep a dead owner's directory alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot, or ``None`` if it does not exist.

    Used with the pid to name a process uniquely (pids are recycled, start times are not).
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """``"<pid>.<start>"`` for ``pid`` (default: this process): the owner part of a name."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{process_start_time(pid) or 0}"


def owner_alive(tag: str) -> bool:
    """Whether the process named by an :func:`owner_tag` (or a bare pid) still runs."""
    pid_text, _, start_text = tag.partition(".")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not start_text:
        return True
    start = process_start_time(pid)
    # Without a readable /proc entry, assume alive: removing a live owner's directory is worse
    # than keeping a dead one's for a while.
    return start is None or str(start) == start_text


def make_private_dir(prefix: str, base: str | None = None) -> Path:
    """A new directory ``<base>/<prefix><owner_tag>-<random>``, mode 0700, owned by this process."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-", dir=base))


def remove_tree(path: str | os.PathLike[str]) -> bool:
    """Remove ``path`` and everything under it without following any symlink; never raises.

    ``path`` itself is unlinked if it is a symlink or a file. Returns whether it is gone.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = os.open(parent or "/", _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError:
        return not os.path.lexists(path)
    try:
        remove_entry(parent_fd, name)
    finally:
        os.close(parent_fd)
    return not os.path.lexists(path)


_MAX_DEPTH = 512


def remove_entry(parent_fd: int, name: str, depth: int = 0) -> None:
    """Remove entry ``name`` of the directory open as ``parent_fd`` and everything below it,
    without following any symlink; never raises."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=parent_fd)
        return
    if depth < _MAX_DEPTH:
        clear_dir(parent_fd, name, depth)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent_fd)


def clear_dir(parent_fd: int, name: str = ".", depth: int = 0) -> None:
    """Remove everything inside directory ``name`` (relative to ``parent_fd``), keeping it;
    never follows a symlink, never raises."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        fd = -1
        # A directory without read/search permission: give it back to its owner first.
        if _chmod_dir(parent_fd, name):
            with contextlib.suppress(OSError):
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    if fd < 0:
        return
    try:
        # The directory may refuse unlinking (mode 0o500): make it writable by its owner, keeping
        # the other bits (a host-made inputs directory stays readable by the kernel's uid).
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o700 != 0o700:
                os.fchmod(fd, mode | 0o700)
        with contextlib.suppress(OSError):
            for entry in os.listdir(fd):
                remove_entry(fd, entry, depth + 1)
    finally:
        os.close(fd)


def _chmod_dir(parent_fd: int, name: str) -> bool:
    """``chmod 0700`` a directory that cannot be opened, without following a symlink.

    ``O_PATH`` opens a directory without any permission on it; ``fchmod`` does not work on such a
    descriptor, but ``chmod`` of its ``/proc/self/fd`` link does, and cannot be redirected.
    """
    try:
        fd = os.open(
            name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd
        )
    except OSError:
        return False
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def reap_stale(prefix: str, base: str | None = None) -> int:
    """Remove ``<base>/<prefix>*`` directories of owners that are gone. Returns how many.

    Only real directories owned by this process's user are touched (a symlink or another user's
    entry with a matching name is left alone); nothing raises.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+(?:\.\d+)?)-")
    base_path = Path(base or tempfile.gettempdir())
    removed = 0
    try:
        names = os.listdir(base_path)
    except OSError:
        return 0
    uid = os.geteuid()
    for name in names:
        match = pattern.match(name)
        if match is None or owner_alive(match.group(1)):
            continue
        try:
            info = os.lstat(base_path / name)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue
        if remove_tree(base_path / name):
            removed += 1
    return removed
