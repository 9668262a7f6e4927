"""Orphans: SIGKILL the process that owns an env; everything its kernel started must be gone
within 10 s, without any other process starting a sandbox.

The owner is a child Python process (the real env through ``gym.make``); its kernel renames itself
and starts a child and a ``setsid`` daemon, all named with a token unique to the test, so the test
finds exactly these processes among the host's (and, for Docker, the containers labelled with the
owner's pid). After the check the test removes whatever is left, so that a failure leaves nothing
running.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import GONE_WITHIN_S, kill_token_processes, token_processes

OWNER = r"""
import sys, time
import numpy as np
import gymnasium as gym
import etpo_gym
from etpo_gym.tasks.base import Dataset, Task

backend, token, mode = sys.argv[1:4]
rng = np.random.default_rng(0)
data = Dataset(X=rng.normal(size=(200, 4)), y=rng.integers(0, 2, 200).astype(np.int64),
               feature_names=list("abcd"), class_names=["no", "yes"])
task = Task(name="noise", description="coin flips", task_type="binary", metric="roc_auc",
            loader=lambda: data, source="synthetic")
env = gym.make("DataSci-v0", task=task, sandbox=backend, timeout=600.0)
_, info = env.reset(seed=1)
print("STARTED", info.get("isolation"), flush=True)
spawn = '''
import os, signal, time, ctypes
def name(tag):
    ctypes.CDLL(None).prctl(15, ("rt" + tag + "@@TOKEN@@")[:15].encode(), 0, 0, 0)
if os.fork() == 0:
    try:
        name("C")
        time.sleep(120)
    finally:
        os._exit(0)
if os.fork() == 0:
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        name("D")
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        time.sleep(120)
    finally:
        os._exit(0)
name("K")
'''.replace("@@TOKEN@@", token)
busy = "\nwhile True:\n    pass\n" if mode == "busy" else ""
code = spawn + busy + '''
def build_model(x_train, y_train):
    from sklearn.dummy import DummyClassifier
    return DummyClassifier().fit(x_train, y_train)
'''
env.step(code)
print("STEPPED", flush=True)
time.sleep(600)
"""


#: The label the Docker backend puts on what it makes, with the owner's pid (a secondary check:
#: the processes inside containers are visible on the host, and the token finds them).
OWNER_LABEL = "etpo-gym.owner-pid"


def _engine():
    import docker

    return docker.from_env(timeout=30)


def _own_containers(owner_pid: int) -> list[tuple[str, str]]:
    """(name, state) of containers labelled as made by ``owner_pid`` (a process this test
    started). One list call, no inspection per container: the engine removes ended
    containers at any moment."""
    client = _engine()
    try:
        found = client.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={owner_pid}"})
        return [(",".join(c.get("Names") or []), c.get("State", "")) for c in found]
    finally:
        client.close()


def _remove_owned(owner_pid: int) -> None:
    """Remove the containers and volumes made by ``owner_pid``."""
    selector = {"label": f"{OWNER_LABEL}={owner_pid}"}
    client = _engine()
    try:
        for c in client.containers.list(all=True, ignore_removed=True, filters=selector):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for v in client.volumes.list(filters=selector):
            with contextlib.suppress(Exception):
                v.remove(force=True)
    finally:
        client.close()


def _remove_local_dirs(owner_pid: int) -> None:
    import shutil
    import tempfile

    for prefix in (f"etpo-gym-local-{owner_pid}-", f"etpo-gym-docker-{owner_pid}-"):
        for entry in Path(tempfile.gettempdir()).glob(prefix + "*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


@pytest.mark.parametrize("mode", ["idle", "busy"])
def test_everything_dies_with_its_owner(backend: str, mode: str) -> None:
    """Owner SIGKILLed between steps (``idle``) or while the kernel runs a busy loop (``busy``)."""
    token = secrets.token_hex(4)
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, backend, token, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Ready when the kernel and both of its processes carry the token (and, idle, the step
        # is over). Generous: starting an env on a loaded machine can take long.
        deadline = time.monotonic() + 240
        want = {"rtK", "rtC", "rtD"}
        assert owner.stdout is not None
        isolation = ""
        for line in owner.stdout:
            if line.startswith("STARTED"):
                isolation = line.split()[-1]
                break
        while time.monotonic() < deadline:
            if owner.poll() is not None:
                pytest.fail(
                    f"the owner exited early: {owner.stdout.read() if owner.stdout else ''}"
                )
            names = {comm[:3] for comm in token_processes(token).values()}
            if want <= names:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the kernel's processes did not appear: {token_processes(token)}")
        if mode == "idle":
            for line in owner.stdout:
                if line.startswith("STEPPED"):
                    break
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        killed_at = time.monotonic()
        left: dict[int, str] = {}
        running: list = []
        while True:
            left = token_processes(token)
            running = (
                [c for c in _own_containers(owner.pid) if c[1] == "running"]
                if backend == "docker"
                else []
            )
            if (not left and not running) or time.monotonic() - killed_at > GONE_WITHIN_S:
                break
            time.sleep(0.2)
        kernels = {pid: comm for pid, comm in left.items() if comm.startswith("rtK")}
        assert not kernels, f"{GONE_WITHIN_S:g} s after the owner's SIGKILL the kernel runs"
        if left and isolation == "none":
            # A plain process's children outlive it unless a pid namespace or cgroup holds them.
            pytest.skip(
                "needs isolation 'namespaces': at isolation 'none' the kernel's children "
                f"outlive the owner's SIGKILL: {sorted(left.values())}"
            )
        assert not left, f"{GONE_WITHIN_S:g} s after the owner's SIGKILL these still run: {left}"
        assert not running, (
            f"{GONE_WITHIN_S:g} s after the owner's SIGKILL these containers run: {running}"
        )
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        kill_token_processes(token)
        if backend == "docker":
            _remove_owned(owner.pid)
        _remove_local_dirs(owner.pid)
        if owner.stdout is not None:
            owner.stdout.close()
