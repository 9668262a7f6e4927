"""The pod server (``etpo-gym sandbox serve``) against a real engine: real server processes, real
takers, SIGKILL of either side."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import pytest

import etpo_gym  # noqa: F401  (registers the envs)
from etpo_gym.errors import SandboxError
from etpo_gym.sandbox import podserver
from etpo_gym.sandbox.docker import DockerSandbox, reap_orphans
from etpo_gym.sandbox.engine import LABEL_OWNER_PID, LABEL_POD_SERVER

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

MEMORY = 768 * 2**20
SMALL_FIT = (
    "from sklearn.linear_model import LogisticRegression\n"
    "model = LogisticRegression(max_iter=1000).fit(x_train, y_train)\n"
)


SERVE = [sys.executable, "-m", "etpo_gym.sandbox.manage", "serve"]


class Server:
    """``etpo-gym sandbox serve`` in a process of its own, at a socket of this test."""

    def __init__(self, path: Path, pods: int = 2) -> None:
        self.path = str(path)
        self.process = subprocess.Popen(
            [*SERVE, "--socket", self.path, "--pods", str(pods), "--memory-limit", str(MEMORY)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def status(self) -> dict:
        return podserver.server_status(self.path)

    def wait_ready(self, pods: int) -> None:
        """Until ``pods`` pods are ready (a start takes a second or two, minutes under load)."""
        deadline = time.monotonic() + 300
        while True:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                if self.status()["ready"] >= pods:
                    return
            except SandboxError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "the pod server made no pods in 300 s"
            time.sleep(0.1)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


@pytest.fixture
def server(tmp_path):
    # Longer than an AF_UNIX path may be (108 bytes): the server and its takers must cope.
    srv = Server(tmp_path / ("d" * 110) / "pods.sock")
    srv.wait_ready(2)
    yield srv
    srv.stop()


def _running(**labels: str) -> list[str]:
    """Ids of the running sandbox containers with these labels (one listing call)."""
    import docker

    client = docker.from_env()
    try:
        selector = [f"{key}={value}" for key, value in labels.items()]
        found = client.api.containers(filters={"label": selector, "status": "running"})
        return [c["Id"] for c in found]
    finally:
        client.close()


def _is_running(container_id: str) -> bool:
    import docker

    client = docker.from_env()
    try:
        return client.api.inspect_container(container_id)["State"]["Running"]
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


def _init_pidfds(container_ids: list[str]) -> list[int]:
    """Pidfds of the containers' inits: a container runs code exactly while its init lives."""
    import docker

    client = docker.from_env()
    try:
        pids = [client.api.inspect_container(i)["State"]["Pid"] for i in container_ids]
    finally:
        client.close()
    fds = [os.pidfd_open(pid) for pid in pids]
    assert all(_is_running(i) for i in container_ids)  # the pids were theirs when opened
    return fds


def _wait_gone(pidfds: list[int], since: float) -> None:
    """The property is a time bound: within 10 s of its owner's death no process of the pod
    runs any code (its init is gone, which takes every process of its pid namespace with it)."""
    try:
        while True:
            alive = [fd for fd in pidfds if not select.select([fd], [], [], 0)[0]]
            if not alive:
                return
            assert time.monotonic() - since < 10.0, f"{len(alive)} pods still run"
            time.sleep(0.05)
    finally:
        for fd in pidfds:
            os.close(fd)


def _read_line(process: subprocess.Popen, timeout: float = 300) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no line from the process in {timeout} s"
    return process.stdout.readline()


def test_a_taken_pod_is_ready_imported_and_the_takers_own(server):
    before = server.status()
    sb = DockerSandbox(timeout=60, memory_limit=MEMORY, pool_size=0, pod_server=server.path)
    try:
        sb.reset(seed=3)
        result = sb.execute("import os, random; print(os.getuid(), random.random())")
        assert result.ok, result.error
        backend = sb.backend
        assert (backend.pods_from_server, backend.pods_started) == (1, 0)
        container = sb.container
        assert container is not None and container.labels[LABEL_POD_SERVER] == "1"
        # Its imports were done in the server's time, and it never ran a kernel before.
        assert backend.pod_import_s() and min(backend.pod_import_s()) > 0
        # Its directory moved into the taker's (the supervisor refuses a hand-over of a pod that
        # ever served a kernel: tests/sandbox/test_docker_pod.py).
        pod = sb.provisioner.pod
        assert pod.root.parent == backend.root and pod.data_dir.is_dir()
        # Seeded per kernel as without a server: the same seed prints the same number.
        sb.reset(seed=3)
        again = sb.execute("import os, random; print(os.getuid(), random.random())")
        assert again.stdout == result.stdout
        after = server.status()
        assert after["handed_over"] == before["handed_over"] + 1
        # The server starts a replacement for the pod it handed over.
        server.wait_ready(2)
    finally:
        sb.close()
        sb.close()
    assert not _is_running(container.id)
    assert not pod.root.exists()


def test_an_env_on_a_taken_pod_scores_the_code_honestly(server):
    env = gym.make(
        "DataSci-v0",
        task="breast_cancer",
        sandbox="docker",
        sandbox_kwargs={"pod_server": server.path, "memory_limit": MEMORY},
    )
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(SMALL_FIT)
        assert info["status"] == "ok", info["error"]
        assert terminated and 0.9 < reward <= 1.0
        assert env.unwrapped.sandbox.backend.pods_from_server >= 1
    finally:
        env.close()


TAKER = r"""
import json, os, sys, time
from etpo_gym.sandbox.docker import DockerSandbox
sb = DockerSandbox(memory_limit=int(sys.argv[2]), pool_size=0, pod_server=sys.argv[1])
sb.reset(seed=0)
assert sb.execute("x = 1").ok
# A child that outlives the taker with a copy of the pod's connection: the pod must follow the
# taker's own life (its pidfd), not the connection's.
kept = os.dup(sb.provisioner.pod._conn.fileno())
keeper = os.fork()
if keeper == 0:
    time.sleep(600)
    os._exit(0)
os.close(kept)
print(json.dumps({"container": sb.container.id, "from_server": sb.backend.pods_from_server,
                  "keeper": keeper}), flush=True)
time.sleep(600)
"""


def test_a_taken_pod_ends_with_its_taker_not_with_the_server(server):
    taker = subprocess.Popen(
        [sys.executable, "-c", TAKER, server.path, str(MEMORY)], stdout=subprocess.PIPE, text=True
    )
    facts: dict = {}
    try:
        line = _read_line(taker)
        facts = json.loads(line) if line.startswith("{") else {}
        assert facts.get("from_server") == 1, line
        pidfds = _init_pidfds([facts["container"]])
        taker.send_signal(signal.SIGKILL)  # no close(), no finaliser
        taker.wait()
        _wait_gone(pidfds, time.monotonic())
        assert server.process.poll() is None  # the server lives on, and serves
        assert server.status()["handed_over"] == 1
    finally:
        taker.kill()
        taker.wait()
        if facts.get("keeper"):
            os.kill(facts["keeper"], signal.SIGKILL)
    # The taker's directory (the pod's was moved into it) goes with a later reaping.
    reap_orphans()
    assert not list(Path(tempfile.gettempdir()).glob(f"etpo-gym-docker-{taker.pid}-*"))


def test_the_servers_death_ends_its_ready_pods_but_not_a_taken_one(server):
    sb = DockerSandbox(timeout=60, memory_limit=MEMORY, pool_size=0, pod_server=server.path)
    try:
        sb.reset(seed=1)
        assert sb.backend.pods_from_server == 1
        taken = sb.container.id
        server_pid = server.process.pid
        ready = [i for i in _running(**{LABEL_OWNER_PID: str(server_pid)}) if i != taken]
        assert ready
        pidfds = _init_pidfds(ready)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        _wait_gone(pidfds, time.monotonic())
        # The taken pod still carries the dead server's labels: a reaping leaves it alone.
        reap_orphans()
        result = sb.execute("print(6 * 7)")
        assert result.ok and result.stdout.strip() == "42", result.error
        sb.reset(seed=2)  # its next kernel comes from the same pod, wiped
        assert sb.execute("print(1)").ok
    finally:
        sb.close()
    assert not _is_running(taken)


def test_other_settings_or_no_server_start_a_pod_of_their_own(server, tmp_path):
    for kwargs in ({"pod_server": server.path, "cpus": 0.5}, {"pod_server": str(tmp_path / "x")}):
        sb = DockerSandbox(timeout=60, memory_limit=MEMORY, pool_size=0, **kwargs)
        try:
            sb.reset(seed=0)
            assert sb.execute("pass").ok
            assert (sb.backend.pods_from_server, sb.backend.pods_started) == (0, 1)
        finally:
            sb.close()
    assert server.status()["handed_over"] == 0


def test_a_bad_request_is_refused_and_the_server_serves_on(server, tmp_path):
    for payload in (b"not json", json.dumps({"op": "nope"}).encode()):
        with podserver._connect(server.path, 30) as conn:
            conn.sendall(payload)
            assert json.loads(conn.recv(65536))["ok"] is False
    # A directory that is not the taker's own pod directory is no rename target.
    settings = server.status()["settings"]
    with podserver._connect(server.path, 30) as conn:
        conn.sendall(
            json.dumps({"op": "take", "settings": settings, "root": str(tmp_path)}).encode()
        )
        reply = json.loads(conn.recv(65536))
        assert reply["ok"] is False and "pod directory" in reply["error"]
    assert server.status()["ready"] == 2 and server.status()["handed_over"] == 0


def test_serve_refuses_a_second_server_and_stops_cleanly_on_sigterm(server):
    second = subprocess.run(
        [*SERVE, "--socket", server.path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1 and "already answers" in second.stderr
    # A socket directory others could write to would let them replace the socket: refused.
    shared = Path(server.path).parent.parent / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    third = subprocess.run(
        [*SERVE, "--socket", str(shared / "pods.sock")], capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 1 and "no group or other user can write" in third.stderr
    assert not (shared / "pods.sock").exists()
    pid = server.process.pid
    assert _running(**{LABEL_OWNER_PID: str(pid)})
    out = server.stop()
    assert server.process.returncode == 0, out
    assert "stopped after handing over 0 pods" in out
    assert not _running(**{LABEL_OWNER_PID: str(pid)})
    assert not os.path.exists(server.path)
