"""The launcher (:mod:`etpo_gym.sandbox.confine`) with real processes, no kernel: the uid drop as
root at the plain level, tree kill, and the owner's non-dumpable memory as a non-root host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etpo_gym.sandbox.confine import Confined, Limits, Spec, _uid_can_run

ROOT = os.geteuid() == 0
#: An interpreter an unprivileged uid can run (the venv's may live under /root).
PROBE_PYTHON = next(
    (
        p
        for p in (sys.executable, "/usr/bin/python3", shutil.which("python3"))
        if p and os.path.exists(p) and _uid_can_run(p)
    ),
    None,
)
needs_root_probe = pytest.mark.skipif(
    not ROOT or PROBE_PYTHON is None,
    reason="needs root and an interpreter an unprivileged uid can run",
)


def _start(code: str, tmp_path: Path, name: str) -> tuple[Confined, Path]:
    log = tmp_path / f"{name}.log"
    spec = Spec(
        argv=[PROBE_PYTHON, "-S", "-c", textwrap.dedent(code)],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        log_path=log,
    )
    return Confined(spec, Limits(memory_bytes=None), "none", python=PROBE_PYTHON), log


@needs_root_probe
def test_plain_level_as_root_runs_as_a_fresh_unprivileged_uid(tmp_path):
    code = """
    import os, socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect('/var/run/docker.sock'); docker = 'reached'
    except OSError as exc:
        docker = type(exc).__name__
    try:
        open('/etc/etpo-confine-probe', 'w'); etc = 'written'
    except OSError as exc:
        etc = type(exc).__name__
    print(os.getuid(), os.getgid(), os.getgroups(), docker, etc, flush=True)
    """
    first, log1 = _start(code, tmp_path, "a")
    second, log2 = _start(code, tmp_path, "b")
    try:
        assert first.wait(60) == 0 and second.wait(60) == 0
    finally:
        first.close()
        second.close()
    Path("/etc/etpo-confine-probe").unlink(missing_ok=True)
    out1, out2 = log1.read_text().split(), log2.read_text().split()
    assert out1[0] == str(first.uid) and out2[0] == str(second.uid)
    assert first.uid != second.uid and first.uid != 0
    assert out1[2] == "[]"
    assert out1[3] in ("PermissionError", "FileNotFoundError")
    assert out1[4] in ("PermissionError", "OSError")


@needs_root_probe
def test_one_sandbox_cannot_signal_or_read_another(tmp_path):
    victim, _ = _start("import time; time.sleep(120)", tmp_path, "victim")
    try:
        code = f"""
        import os
        out = []
        try:
            os.kill({victim.pid}, 0); out.append('signalled')
        except OSError as exc:
            out.append(type(exc).__name__)
        try:
            open('/proc/{victim.pid}/mem', 'rb').read(1); out.append('read')
        except OSError as exc:
            out.append(type(exc).__name__)
        print(*out, flush=True)
        """
        attacker, log = _start(code, tmp_path, "attacker")
        try:
            assert attacker.wait(60) == 0
        finally:
            attacker.close()
        assert log.read_text().split() == ["PermissionError", "PermissionError"]
        assert victim.poll() is None
    finally:
        victim.close()
    assert victim.poll() is not None


@needs_root_probe
def test_kill_ends_a_daemon_that_left_the_session(tmp_path):
    code = """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            print(os.getpid(), flush=True)
            time.sleep(120)
        os._exit(0)
    time.sleep(120)
    """
    proc, log = _start(code, tmp_path, "daemon")
    try:
        deadline = time.monotonic() + 60
        while not log.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon = int(log.read_text().split()[0])
        assert Path(f"/proc/{daemon}").exists()
    finally:
        proc.close()
    assert not Path(f"/proc/{daemon}").exists() or _zombie(daemon)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


#: Runs as a non-root host. A warm-up on another task imports every module first (the
#: interpreter may sit under /root, out of the unprivileged uid's reach); then the privileges are
#: dropped and the process made dumpable again, as any non-root process starts.
NON_ROOT_OWNER = """
import ctypes, os, sys
import gymnasium as gym
import etpo_gym  # registers the ids
from etpo_gym.tasks import get_task
holder = sys.argv[2]

def hold(name):
    task = get_task(name)
    if holder == "task":
        return task.data  # the labels are now in this process
    return gym.make("DataSci-v0", task=task, sandbox="local")

hold("skill_dates")
libc = ctypes.CDLL(None)
uid = int(sys.argv[1])
os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: what a non-root process starts with
assert libc.prctl(3, 0, 0, 0, 0) == 1
kept = hold("skill_scale")
pid = os.fork()
if pid == 0:  # a process of the same uid, like a kernel of a non-root host
    try:
        with open(f"/proc/{os.getppid()}/mem", "rb") as fh:
            fh.read(1)
        print("readable", flush=True)
    except OSError as exc:
        print(type(exc).__name__, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("dumpable", libc.prctl(3, 0, 0, 0, 0), flush=True)
"""


@pytest.mark.skipif(not ROOT, reason="needs root to become an unprivileged host")
@pytest.mark.parametrize("holder", ["task", "env"])
def test_a_process_holding_labels_is_unreadable_by_its_own_uid(holder):
    out = subprocess.run(
        [sys.executable, "-c", NON_ROOT_OWNER, "1999999999", holder],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PermissionError", "dumpable", "0"]
