"""Docker backend pieces that need no engine: settings, status reasons, socket pinning, owners."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import pytest

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.errors import ConfigError, EngineUnavailable, SandboxUnavailable
from etpo_gym.sandbox import engine, make_sandbox, podserver, resolve_backend
from etpo_gym.sandbox.client import KernelClient, ProtocolFailure
from etpo_gym.sandbox.docker import DockerSandbox, docker_status
from etpo_gym.sandbox.image import debian_mirror, index_settings, requirements
from etpo_gym.sandbox.pod import PodSettings
from etpo_gym.sandbox.provisioner import Connection

NO_ENGINE = "unix:///nonexistent/etpo-gym-test.sock"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cpus": 0}, "cpus"),
        ({"cpus": 10_000}, "cpus"),
        ({"pids_limit": 3}, "pids_limit"),
        ({"memory_limit": 2**20}, "memory_limit"),
        ({"pool_size": -1}, "pool_size"),
        ({"timeout": 0}, "timeout"),
        ({"tmpfs_size": 10}, "tmpfs_size"),
        ({"pods": 0}, "pods"),
        ({"lifetime": 5}, "lifetime"),
        ({"reuse": "yes"}, "reuse"),
    ],
)
def test_bad_settings_name_the_field_and_the_accepted_values(kwargs, field):
    with pytest.raises(ConfigError, match=rf"{field}=.*use "):
        DockerSandbox(**kwargs)


def test_uid_of_an_existing_host_user_is_refused():
    with pytest.raises(ConfigError, match="uid=0"):
        DockerSandbox(uid=0)


def test_status_without_an_engine_says_why(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    ok, reason = docker_status()
    assert not ok
    assert "does not answer" in reason and NO_ENGINE in reason


def test_remote_engine_is_refused_with_a_reason(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
    ok, reason = docker_status()
    assert not ok and "DOCKER_HOST=tcp://192.0.2.1:2375" in reason and "local" in reason


def test_auto_falls_back_to_local_with_one_warning_naming_the_reason(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_backend("auto") == "local"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "does not answer" in messages[0]


def test_auto_fallback_accepts_docker_limits_and_unknown_settings_are_named(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    limits = {"cpus": 1.0, "pids_limit": 128, "pool_size": 1, "tmpfs_size": 2**26}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(
            "DataSci-v0", task="breast_cancer", sandbox="auto", timeout=20.0, sandbox_kwargs=limits
        )
        try:
            _, info = env.reset(seed=0)
            assert not info["infra_error"], info["error"]
            _, _, terminated, _, info = env.step(
                "from sklearn.dummy import DummyClassifier\n"
                "model = DummyClassifier().fit(x_train, y_train)\n"
            )
            assert terminated and info["status"] == "ok" and info["sandbox"] == "local"
        finally:
            env.close()
    sandbox_warnings = [str(w.message) for w in caught if "sandbox" in str(w.message)]
    assert len(sandbox_warnings) == 1 and "local" in sandbox_warnings[0]
    with pytest.raises(ConfigError, match=r"\['pid_limit'\].*pids_limit"):
        make_sandbox("docker", pid_limit=64)


def test_unreachable_engine_is_an_infra_error_not_a_penalty(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    env = gym.make("DataSci-v0", task="breast_cancer", sandbox="docker", error_reward=-1.0)
    try:
        _, info = env.reset(seed=0)
        assert info["infra_error"] is True and "does not answer" in info["error"]
        _, reward, terminated, truncated, info = env.step("model = None")
        assert info["infra_error"] is True and info["status"] == "infra_error"
        assert reward != -1.0 and truncated and not terminated
    finally:
        env.close()


def test_sandbox_start_without_engine_raises_unavailable(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    sandbox = DockerSandbox()
    with pytest.raises(EngineUnavailable, match="does not answer") as caught:
        sandbox.reset(seed=0)
    assert NO_ENGINE in caught.value.reason
    sandbox.close()
    sandbox.close()  # twice is harmless
    assert sandbox.closed


def _listening_socket(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


def _pin(tmp_path, uid):
    """Pin the host channels' sockets ``k-1`` (shell), ``k-2`` (iopub), ``k-4`` (control)."""
    connection = Connection(
        key=b"k",
        socket_dir=tmp_path,
        sockets={"shell": "k-1", "iopub": "k-2", "control": "k-4"},
        socket_uid=uid,
    )
    client = KernelClient(connection)
    deadline = time.monotonic() + 1

    def check() -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("sockets missing")

    return client, client._pin_sockets(check)


def test_pinning_refuses_a_planted_symlink(tmp_path):
    host_only = _listening_socket(tmp_path / "host-only.sock")
    others = [_listening_socket(tmp_path / name) for name in ("k-2", "k-4")]
    try:
        (tmp_path / "k-1").symlink_to(tmp_path / "host-only.sock")
        with pytest.raises(ProtocolFailure, match="k-1 is a symbolic link"):
            _pin(tmp_path, os.geteuid())
    finally:
        for sock in (host_only, *others):
            sock.close()


def test_pinning_refuses_a_socket_of_another_owner_and_a_regular_file(tmp_path):
    sockets = [_listening_socket(tmp_path / name) for name in ("k-1", "k-2", "k-4")]
    try:
        with pytest.raises(ProtocolFailure, match="owned by uid"):
            _pin(tmp_path, os.geteuid() + 1)
        client, paths = _pin(tmp_path, os.geteuid())  # the genuine ones are accepted
        assert sorted(paths) == ["control", "iopub", "shell"]
        client.close()
    finally:
        for sock in sockets:
            sock.close()
    (tmp_path / "k-1").unlink()
    (tmp_path / "k-1").write_text("not a socket")
    with pytest.raises(ProtocolFailure, match="k-1 is not a socket"):
        _pin(tmp_path, os.geteuid())


def test_a_pinned_socket_is_reached_through_its_descriptor_after_a_swap(tmp_path):
    kernel = _listening_socket(tmp_path / "k-1")
    others = [_listening_socket(tmp_path / name) for name in ("k-2", "k-4")]
    try:
        client, paths = _pin(tmp_path, os.geteuid())
        # The code replaces the socket path by a symlink to a host-only socket afterwards.
        host_only = _listening_socket(tmp_path / "host-only.sock")
        (tmp_path / "k-1").unlink()
        (tmp_path / "k-1").symlink_to(tmp_path / "host-only.sock")
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(paths["shell"])
        kernel.settimeout(2)
        accepted, _ = kernel.accept()  # the pinned kernel socket got the connection
        host_only.settimeout(0.2)
        with pytest.raises(TimeoutError):
            host_only.accept()
        for s in (accepted, peer, host_only):
            s.close()
        client.close()
    finally:
        for sock in (kernel, *others):
            sock.close()


def test_orphans_are_judged_by_dead_owner_on_this_host():
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(child.stdout)
    here = socket.gethostname()
    own = engine.owner_labels()
    assert not engine.orphaned(own)
    assert engine.orphaned({**own, engine.LABEL_OWNER_PID: str(dead_pid)})
    # A live pid with another start time is a reused pid: the owner is gone.
    assert engine.orphaned({**own, engine.LABEL_OWNER_START: "1"})
    elsewhere = {**own, engine.LABEL_OWNER_HOST: here + "-other"}
    assert not engine.orphaned({**elsewhere, engine.LABEL_OWNER_PID: "1"})


def test_build_inputs_pin_host_versions_and_drop_credentials(monkeypatch):
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in requirements()
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:secret@mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/x https://mirror.example/extra")
    settings = index_settings(log=lambda _msg: None)
    assert "PIP_INDEX_URL" not in settings  # carries credentials
    assert settings["PIP_EXTRA_INDEX_URL"] == "https://mirror.example/extra"


def test_debian_mirror_comes_from_apt_sources():
    if not any(os.path.exists(p) for p in ("/etc/apt/sources.list", "/etc/apt/sources.list.d")):
        pytest.skip("not a Debian-like machine")
    try:
        mirror, suite = debian_mirror()
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    assert mirror.startswith(("http://", "https://")) and mirror.rstrip("/").endswith("/debian")
    assert suite


# -- pod server, without an engine (the engine-backed tests: test_pod_server.py) ---------------


def test_pod_server_settings_name_the_value_and_what_is_accepted(tmp_path):
    with pytest.raises(ConfigError, match=r"pods=0 .*1\.\.16"):
        podserver.PodServer(str(tmp_path / "s"), pods=0)
    with pytest.raises(ConfigError, match="reuse"):
        podserver.PodServer(str(tmp_path / "s"), reuse=False)
    with pytest.raises(ConfigError, match=r"pod_server='' .*'auto'"):
        DockerSandbox(pod_server="")


def test_auto_finds_the_pod_server_named_by_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(podserver.ENV_VAR, str(tmp_path / "s.sock"))
    assert podserver.resolve("auto") == str(tmp_path / "s.sock")
    monkeypatch.setenv(podserver.ENV_VAR, "off")
    assert podserver.resolve("auto") is None
    assert podserver.resolve(None) is None and podserver.resolve("/x") == "/x"


def _pod_settings() -> PodSettings:
    return PodSettings("img", 61000, 2**30, 1.0, 256, 2**20, 2**20, 2**20, 600.0, 60.0, {})


def test_a_stuck_pod_server_costs_one_timeout_then_is_not_asked(monkeypatch, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(tmp_path / "s.sock"))
    listener.listen(8)  # accepts connections (the kernel does), never answers
    monkeypatch.setattr(podserver, "TAKE_TIMEOUT", 0.2)
    monkeypatch.setattr(podserver, "_QUIET_UNTIL", {})
    path = str(tmp_path / "s.sock")
    try:
        assert podserver.take_pod(path, _pod_settings(), tmp_path, client=None) is None
        assert path in podserver._QUIET_UNTIL
        listener.settimeout(0)
        listener.accept()[0].close()  # the one connection it made
        assert podserver.take_pod(path, _pod_settings(), tmp_path, client=None) is None
        with pytest.raises(BlockingIOError):
            listener.accept()  # not asked again
    finally:
        listener.close()


FAKE_SERVER = r"""
import json, os, socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(sys.argv[1])
listener.listen(1)
print("listening", flush=True)
conn, _ = listener.accept()
print("received", len(conn.recv(65536)), flush=True)
facts = {"name": "etpo-gym-1-0123456789", "uid": 61000, "container_id": "x", "init_pid": 1,
         "started": 0.0}
socket.send_fds(conn, [json.dumps({"ok": True, "pod": facts}).encode()], [0, 1])
conn.recv(1)
"""


def test_a_taker_believes_no_pod_server_of_another_user(tmp_path):
    """A socket at the server's path that another user made (in a directory it could write) is
    not a pod server: its "pod" would be a fake supervisor, its kernels fake rewards."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the fake server as another user")
    python = "/usr/bin/python3"  # one that another user can run (not under a home directory)
    if not os.access(python, os.X_OK):
        pytest.skip(f"no {python} for the fake server")
    shared = Path(tempfile.mkdtemp(prefix="etpo-gym-test-shared-"))  # pytest's tmp is 0700
    shared.chmod(0o777)
    path = str(shared / "s.sock")
    fake = subprocess.Popen(
        [python, "-c", FAKE_SERVER, path],
        stdout=subprocess.PIPE,
        text=True,
        user=65534,
        group=65534,
        cwd=str(shared),
    )
    try:
        assert fake.stdout.readline().strip() == "listening"
        assert os.stat(path).st_uid == 65534
        assert podserver.take_pod(path, _pod_settings(), tmp_path, client=None) is None
        # Not even the request (which names this process's directory) went to it.
        assert fake.stdout.readline().strip() == "received 0"
    finally:
        fake.kill()
        fake.wait()
        shutil.rmtree(shared)
