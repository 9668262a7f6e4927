"""Docker backend pieces that need no engine: settings, status reasons, socket pinning, owners."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings

import gymnasium as gym
import pytest

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.errors import ConfigError, SandboxError, SandboxUnavailable
from etpo_gym.sandbox import docker as docker_backend
from etpo_gym.sandbox import make_sandbox, resolve_backend
from etpo_gym.sandbox.docker import DockerSandbox, docker_status
from etpo_gym.sandbox.image import debian_mirror, index_settings, requirements

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
    with pytest.raises(SandboxUnavailable, match="does not answer"):
        sandbox.reset(seed=0)
    sandbox.close()
    sandbox.close()  # twice is harmless
    assert sandbox.closed


class _FakeBox:
    """Stands in for a running container: only ``alive`` and ``io_dir`` are read by ``_pin``."""

    def __init__(self, path):
        self.io_dir = path

    def alive(self) -> bool:
        return True


def _listening_socket(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


def _pin(tmp_path, name, uid):
    sandbox = DockerSandbox(uid=None)
    sandbox.uid = uid
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sandbox._pin(_FakeBox(tmp_path), dir_fd, name, time.monotonic() + 1)
    finally:
        os.close(dir_fd)
        sandbox.close()


def test_pinning_refuses_a_planted_symlink(tmp_path):
    host_only = _listening_socket(tmp_path / "host-only.sock")
    try:
        (tmp_path / "k-1").symlink_to(tmp_path / "host-only.sock")
        with pytest.raises(SandboxError, match="k-1 is a symbolic link"):
            _pin(tmp_path, "k-1", os.geteuid())
    finally:
        host_only.close()


def test_pinning_refuses_a_socket_of_another_owner_and_a_regular_file(tmp_path):
    kernel = _listening_socket(tmp_path / "k-2")
    try:
        with pytest.raises(SandboxError, match="not a socket owned by uid"):
            _pin(tmp_path, "k-2", os.geteuid() + 1)
        fd = _pin(tmp_path, "k-2", os.geteuid())  # the genuine one is accepted
        os.close(fd)
    finally:
        kernel.close()
    (tmp_path / "k-3").write_text("not a socket")
    with pytest.raises(SandboxError, match="not a socket owned by uid"):
        _pin(tmp_path, "k-3", os.geteuid())


def test_a_pinned_socket_is_reached_through_its_descriptor_after_a_swap(tmp_path):
    kernel = _listening_socket(tmp_path / "k-1")
    try:
        fd = _pin(tmp_path, "k-1", os.geteuid())
        # The code replaces the socket path by a symlink to a host-only socket afterwards.
        host_only = _listening_socket(tmp_path / "host-only.sock")
        (tmp_path / "k-1").unlink()
        (tmp_path / "k-1").symlink_to(tmp_path / "host-only.sock")
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(f"/proc/self/fd/{fd}")
        kernel.settimeout(2)
        accepted, _ = kernel.accept()  # the pinned kernel socket got the connection
        host_only.settimeout(0.2)
        with pytest.raises(TimeoutError):
            host_only.accept()
        for s in (accepted, client, host_only):
            s.close()
        os.close(fd)
    finally:
        kernel.close()


def test_orphans_are_judged_by_dead_owner_on_this_host():
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(child.stdout)
    here = socket.gethostname()
    own = docker_backend._owner_labels()
    assert not docker_backend._orphaned(own)
    assert docker_backend._orphaned({**own, docker_backend.LABEL_OWNER_PID: str(dead_pid)})
    # A live pid with another start time is a reused pid: the owner is gone.
    assert docker_backend._orphaned({**own, docker_backend.LABEL_OWNER_START: "1"})
    elsewhere = {**own, docker_backend.LABEL_OWNER_HOST: here + "-other"}
    assert not docker_backend._orphaned({**elsewhere, docker_backend.LABEL_OWNER_PID: "1"})


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
