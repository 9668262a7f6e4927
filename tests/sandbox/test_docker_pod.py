"""Pods against a real engine: owner watchdog, lifetime cap, the wipe between kernels, and what a
kernel can reach. Each test looks only at the containers its own pods (or owner process) made."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from etpo_gym.errors import SandboxError
from etpo_gym.sandbox import pod as pods
from etpo_gym.sandbox.files import remove_tree
from etpo_gym.sandbox.image import default_image

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

UID = 61777


def settings(**overrides) -> pods.PodSettings:
    values = {
        "image": default_image(),
        "uid": UID,
        "memory_limit": 1024 * 2**20,
        "cpus": 1.0,
        "pids_limit": 256,
        "tmpfs_size": 64 * 2**20,
        "output_size": 16 * 2**20,
        "shm_size": 16 * 2**20,
        "lifetime": 600.0,
        "startup_timeout": 180.0,
        "labels": {
            "etpo-gym.sandbox": "1",
            "etpo-gym.owner-pid": str(os.getpid()),
            "etpo-gym.instance": "test-pod-" + secrets.token_hex(4),
        },
    }
    values.update(overrides)
    return pods.PodSettings(**values)


@pytest.fixture(scope="module")
def engine():
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture
def root():
    path = Path(tempfile.mkdtemp(prefix="etpo-gym-test-pod-"))
    yield path
    remove_tree(path)


def own(client, **labels) -> list[str]:
    selector = [f"{key}={value}" for key, value in labels.items()]
    names = [
        c.name
        for c in client.containers.list(all=True, ignore_removed=True, filters={"label": selector})
    ]
    return names + [v.name for v in client.volumes.list(filters={"label": selector})]


class Kernel:
    """A plain jupyter_client connection to a pod's kernel (tests only)."""

    def __init__(self, pod: pods.Pod) -> None:
        from jupyter_client import BlockingKernelClient

        deadline = time.monotonic() + 120
        while not all((pod.io_dir / f"k-{port}").exists() for port in (1, 2)):
            assert time.monotonic() < deadline, "the kernel made no sockets"
            time.sleep(0.01)
        self.client = BlockingKernelClient()
        self.client.load_connection_file(str(pod.io_dir / "kernel.json"))
        self.client.ip = str(pod.io_dir / "k")
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> str:
        out: list[str] = []

        def hook(msg) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(
            textwrap.dedent(code), timeout=120, output_hook=hook
        )
        assert reply["content"]["status"] == "ok", "".join(out)
        return "".join(out)

    def close(self) -> None:
        self.client.stop_channels()


@pytest.fixture(scope="module")
def pod(engine):
    """One pod for the module: each test starts a kernel in it and leaves it wiped."""
    path = Path(tempfile.mkdtemp(prefix="etpo-gym-test-pod-"))
    p = pods.Pod(settings(), path, "etpo-gym-test-" + secrets.token_hex(5))
    try:
        p.start(engine)
        yield p
    finally:
        p.end()
        p.wait_removed(engine)
        remove_tree(path)
    assert not own(engine, **{"etpo-gym.instance": p.settings.labels["etpo-gym.instance"]})


ENV = {"PATH": "/opt/venv/bin:/usr/bin:/bin"}


def test_the_lifetime_cap_ends_a_pod_whatever_runs_in_it(engine, root):
    p = pods.Pod(settings(lifetime=2.0), root, "etpo-gym-test-" + secrets.token_hex(5))
    try:
        # On a loaded machine the cap may pass while the pod is still starting: then the spawn
        # (or the start) fails, and the pod must go all the same.
        with contextlib.suppress(SandboxError):
            p.start(engine)
            p.spawn(0, secrets.token_hex(16), {})
        deadline = time.monotonic() + 60
        while own(engine, **{"etpo-gym.instance": p.settings.labels["etpo-gym.instance"]}):
            assert time.monotonic() < deadline, "the pod outlived its lifetime cap"
            time.sleep(0.2)
    finally:
        p.end()


def test_a_pod_starts_under_a_temporary_directory_longer_than_a_socket_path(engine, root):
    """The owner's control socket lives in the pod's directory; ``AF_UNIX`` paths end at 108
    bytes, so a long temporary directory must not make every pod start fail."""
    deep = root / ("d" * 120)
    deep.mkdir()
    p = pods.Pod(settings(), deep, "etpo-gym-test-" + secrets.token_hex(5))
    assert len(bytes(p.ctl_dir / pods.CTL_SOCKET)) > 108
    try:
        p.start(engine)  # the supervisor connected to the socket and reported ready
        assert p.process_count() == 0
    finally:
        p.end()
        p.wait_removed(engine)
    assert not own(engine, **{"etpo-gym.instance": p.settings.labels["etpo-gym.instance"]})


STASH = r"""
import ctypes, json, os, socket, subprocess, sys, time
MARK = "etpo-stash-7f3a"
libc = ctypes.CDLL(None, use_errno=True)
made = []
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if "rw" not in fields[5].split(","):
        continue
    try:
        fd = os.open(os.path.join(fields[4], MARK), os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError:
        continue
    try:
        os.write(fd, MARK.encode())
    except OSError:
        pass  # a message queue: made, but not written like a file
    os.close(fd)
    made.append(fields[4])
for nested in ("/work/a/b", "/tmp/.hidden", os.environ["ETPO_OUT_DIR"] + "/d", "/dev/shm/d"):
    os.makedirs(nested)
    open(os.path.join(nested, MARK), "w").write(MARK)
os.chmod("/work/a", 0)  # a directory its own owner cannot read
os.symlink("/ctl", "/tmp/link-" + MARK)  # the wipe must remove the link, not follow it
os.setxattr("/work", "user.stash", MARK.encode())
os.chmod("/work", 0o777)
os.utime("/work", (1234567890, 1234567890))
for name, call, args in (("shm", libc.shmget, (0x7F3A, 4096, 0o1600)),
                         ("sem", libc.semget, (0x7F3A, 1, 0o1600)),
                         ("msg", libc.msgget, (0x7F3A, 0o1600))):
    assert call(*args) >= 0, name
    made.append(name)
shm = libc.shmat(libc.shmget(0x7F3A, 4096, 0), None, 0)  # attached, so it outlives IPC_RMID
daemon = ("import os, socket, time\n"
          "s = socket.socket(socket.AF_UNIX); s.bind(b'\\0" + MARK + "'); s.listen()\n"
          "if os.fork() == 0:\n    os.setsid(); time.sleep(600)\n"
          "time.sleep(600)\n")
subprocess.Popen([sys.executable, "-c", daemon, MARK], env={"STASH": MARK}, start_new_session=True)
for _ in range(500):
    try:
        socket.socket(socket.AF_UNIX).connect(b"\0" + MARK.encode())
        made.append("abstract socket")
        break
    except OSError:
        time.sleep(0.01)
print(json.dumps(made))
"""

LOOK = r"""
import json, os, socket, stat
MARK = "etpo-stash-7f3a"
found = []
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    if "rw" not in fields[5].split(",") or fields[4].startswith(("/proc", "/sys")):
        continue
    for top, dirs, files in os.walk(fields[4]):
        found += [os.path.join(top, n) for n in dirs + files if MARK in n]
for kind in ("shm", "sem", "msg"):
    found += [kind] if open(f"/proc/sysvipc/{kind}").read().splitlines()[1:] else []
try:
    socket.socket(socket.AF_UNIX).connect(b"\0" + MARK.encode())
    found.append("abstract socket")
except OSError:
    pass
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if MARK.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
            found.append(f"process {pid}")
    except OSError:
        pass
info = os.stat("/work")  # the stash made it 0777, gave it a time and an attribute
if os.listxattr("/work") or stat.S_IMODE(info.st_mode) == 0o777 or info.st_mtime == 1234567890:
    found.append("/work root metadata")
print(json.dumps(found))
"""


def test_nothing_carries_from_one_kernel_to_the_next(pod):
    pod.spawn(0, secrets.token_hex(16), ENV)
    kernel = Kernel(pod)
    made = json.loads(kernel.run(STASH).strip().splitlines()[-1])
    kernel.close()
    # Not vacuous: the stash reached every kind of place.
    for place in ("/work", "/tmp", "/dev/shm", "/dev/mqueue", "/io", "shm", "sem", "msg"):
        assert place in made, made
    assert "abstract socket" in made
    assert pod.wipe() == []
    pod.spawn(1, secrets.token_hex(16), ENV)
    kernel = Kernel(pod)
    found = json.loads(kernel.run(LOOK).strip().splitlines()[-1])
    kernel.close()
    assert found == []
    assert pod.wipe() == []


REACH = r"""
import ctypes, errno, os, signal
me = os.getpid()
supervisor = os.getppid()
out = {"uid": os.getuid(), "groups": os.getgroups()}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
out["caps"] = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
out["nnp"] = status["NoNewPrivs"].strip()
def attempt(name, fn):
    try:
        fn()
        out[name] = "REACHED"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
attempt("ctl", lambda: os.listdir("/ctl"))
attempt("signal", lambda: os.kill(supervisor, signal.SIGSTOP))
attempt("mem", lambda: open(f"/proc/{supervisor}/mem", "rb").read(1))
attempt("environ", lambda: open(f"/proc/{supervisor}/environ", "rb").read())
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, supervisor, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("ptrace", ptrace)
attempt("cgroup", lambda: open("/sys/fs/cgroup/memory/memory.max_usage_in_bytes").read())
import sklearn.datasets
try:
    sklearn.datasets.load_diabetes()
    out["diabetes"] = "LOADED"
except Exception as exc:
    out["diabetes"] = type(exc).__name__
print(__import__("json").dumps(out))
"""


def test_a_kernel_has_no_privilege_and_cannot_reach_its_supervisor(pod):
    pod.spawn(2, secrets.token_hex(16), ENV)
    kernel = Kernel(pod)
    out = json.loads(kernel.run(REACH).strip().splitlines()[-1])
    kernel.close()
    assert out["uid"] == UID and out["groups"] == []
    assert set(out["caps"].values()) == {"0000000000000000"} and out["nnp"] == "1"
    assert out["ctl"] == "EACCES" and out["signal"] == "EPERM"
    assert out["mem"] in ("EACCES", "EPERM") and out["environ"] in ("EACCES", "EPERM")
    assert out["ptrace"] == "EPERM" and out["cgroup"] == "ENOENT"
    assert out["diabetes"] != "LOADED"
    assert pod.wipe() == []


def test_oom_is_a_host_fact_and_the_pod_survives_it(pod):
    kernel_proc = pod.spawn(4, secrets.token_hex(16), ENV)
    kernel = Kernel(pod)
    before = pod.oom_kills()
    assert before is not None
    # Shared memory escapes the data-segment limit: the pod's OOM killer stops it.
    size = 2 * pod.settings.memory_limit
    code = f"import mmap\nm = mmap.mmap(-1, {size})\nfor i in range(0, {size}, 4096): m[i] = 1"
    kernel.client.execute(code)
    deadline = time.monotonic() + 120
    while kernel_proc.alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kernel.close()
    # Ended (exiting, or exited) with SIGKILL, from the host's /proc; the OOM kill from the
    # pod's cgroup. The exit can take seconds more: the host does not wait for it.
    assert kernel_proc.end() in ((True, -signal.SIGKILL), (True, None))
    assert pod.oom_kills() > before and pod.alive()
    # The wipe gives killed processes 10 s to be reaped; freeing this mapping took longer than
    # that under a load average of 30. The wipe's property is not a speed: wait for the exit.
    while not pods._readable(kernel_proc.pidfd):
        assert time.monotonic() < deadline + 300
        time.sleep(0.05)
    assert pod.wipe() == []  # which waits for every process to be reaped
    assert pod.kernel_status() == -signal.SIGKILL


def test_a_pod_is_handed_over_only_unused_and_to_a_live_process(engine, root):
    """The supervisor's own checks behind the pod server's: a pod that served a kernel (even
    wiped clean since) is never handed over, nor one to a process that has exited."""
    p = pods.Pod(settings(), root, "etpo-gym-test-" + secrets.token_hex(5))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_fd = os.pidfd_open(dead.pid)
    dead.wait()
    me = os.pidfd_open(os.getpid())
    try:
        p.start(engine)
        with pytest.raises(SandboxError, match="new owner has exited"):
            p.hand_over(dead_fd)
        p.spawn(5, secrets.token_hex(16), ENV)
        with pytest.raises(SandboxError, match=r"not clean|served 1 kernel"):
            p.hand_over(me)
        assert p.wipe() == []
        with pytest.raises(SandboxError, match="served 1 kernel"):
            p.hand_over(me)
        assert p.alive()
    finally:
        os.close(dead_fd)
        os.close(me)
        p.end()
        p.wait_removed(engine)


def test_an_unprovable_pod_says_so(pod):
    """Last: it leaves the module's pod unclean."""
    pod.spawn(3, secrets.token_hex(16), ENV)
    kernel = Kernel(pod)
    # /dev/null is writable by everyone, so the kernel may set its times: a change the wipe
    # cannot undo. The pod must not be declared clean.
    kernel.run("import os; os.utime('/dev/null')")
    kernel.close()
    problems = pod.wipe()
    assert any("/dev" in problem for problem in problems), problems
