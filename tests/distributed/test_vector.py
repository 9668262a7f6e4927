"""RayVectorEnv on a real two-node Ray cluster: the vector API of ``gym.make_vec`` (compared
transition by transition with ``SyncVectorEnv``), placement, and a worker killed mid-step."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from processes import still_running

from etpo_gym.errors import EtpoGymError

COUNT = "ray_agents:Count-v0"
GOOD = (
    "    from sklearn.linear_model import LogisticRegression\n"
    "    model = LogisticRegression(max_iter=500).fit(x_train, y_train)\n"
)
SLEEP = "    import time\n    time.sleep(60)\n" + GOOD


def _same(a: Any, b: Any, where: str = "") -> None:
    """``a == b`` through dicts, tuples and arrays (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, sorted(a), sorted(b))
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _rollout(envs: gym.vector.VectorEnv, steps: int) -> list[Any]:
    out: list[Any] = [envs.reset(seed=7)]
    for k in range(steps):
        out.append(envs.step(np.array([(k + i) % 3 for i in range(envs.num_envs)])))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_transitions_match_sync_vector_env(ray_cluster, mode):
    from etpo_gym.distributed import RayVectorEnv

    sync = gym.make_vec(
        COUNT, num_envs=2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}
    )
    envs = RayVectorEnv(COUNT, num_envs=2, autoreset_mode=mode)
    try:
        # one actor per CPU: the two 1-CPU nodes hold one sub-env each
        assert len({w.node_id for w in envs.workers}) == 2
        assert envs.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
        assert envs.single_observation_space == sync.single_observation_space
        assert envs.action_space == sync.action_space
        expected, got = _rollout(sync, 12), _rollout(envs, 12)
        for k, (a, b) in enumerate(zip(expected, got)):
            _same(a, b, f"step {k}")
        ended = [np.any(t[2] | t[3]) for t in got[1:]]
        assert (
            any(ended) and any(np.any(t[2]) for t in got[1:]) and any(np.any(t[3]) for t in got[1:])
        )
        assert envs.get_attr("spec")[0].id == "Count-v0" and envs.replaced == 0
    finally:
        sync.close()
        envs.close()
        envs.close()  # twice is harmless


@pytest.mark.slow
def test_disabled_autoreset_and_reset_mask_match_sync(ray_cluster):
    from etpo_gym.distributed import RayVectorEnv

    sync = gym.make_vec(
        COUNT,
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED},
    )
    envs = RayVectorEnv(COUNT, num_envs=2, autoreset_mode=AutoresetMode.DISABLED)
    try:
        for venv in (sync, envs):
            venv.reset(seed=3)
        for _ in range(3):
            a, b = sync.step(np.array([1, 2])), envs.step(np.array([1, 2]))
            _same(a, b)
            done = a[2] | a[3]
            if done.any():
                break
        assert done.any()
        with pytest.raises(gym.error.ResetNeeded):
            envs.step(np.array([0, 0]))
        options = {"reset_mask": done}
        _same(sync.reset(options=dict(options)), envs.reset(options=dict(options)))
    finally:
        sync.close()
        envs.close()


def _own_containers(pid: int) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        found = client.containers.list(
            all=True, ignore_removed=True, filters={"label": f"etpo-gym.owner-pid={pid}"}
        )
        return [c.name for c in found]
    finally:
        client.close()


def _remove_own_containers(pid: int) -> None:
    import docker

    selector = {"label": f"etpo-gym.owner-pid={pid}"}
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, ignore_removed=True, filters=selector):
            container.remove(force=True)
        for volume in client.volumes.list(filters=selector):
            volume.remove(force=True)
    finally:
        client.close()


_PODS = importlib.util.find_spec("etpo_gym.sandbox.pod") is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "local",
        pytest.param(
            "docker",
            marks=[
                pytest.mark.docker,
                pytest.mark.xfail(
                    not _PODS,
                    reason="containers die with their owner from the Docker pods' watchdog "
                    "(branch dockeriso); before it they wait for the next reaper",
                ),
            ],
        ),
    ],
)
def test_killed_worker_is_an_infra_step_and_leaves_no_kernel(ray_cluster, backend, request):
    import psutil

    from etpo_gym.distributed import RayVectorEnv

    if backend == "docker":
        request.getfixturevalue("docker_ready")
    envs = RayVectorEnv(
        "DataSci-v0", num_envs=2, task="breast_cancer", sandbox=backend, max_steps=3, timeout=120
    )
    victim = None
    try:
        envs.reset(seed=0)
        victim = envs.workers[0]
        kernels = {p.pid: p.create_time() for p in psutil.Process(victim.pid).children(True)}
        if backend == "local":
            assert kernels  # the episode's kernel (and the pool's next one) run under the worker
        box: dict[str, Any] = {}
        stepping = threading.Thread(target=lambda: box.update(out=envs.step([SLEEP, GOOD])))
        stepping.start()
        time.sleep(3)  # the sleep cell is running in the victim's kernel
        os.kill(victim.pid, signal.SIGKILL)
        stepping.join(timeout=600)
        _, rewards, terminated, truncated, info = box["out"]
        assert info["status"][0] == "infra_error" and info["infra_error"][0]
        assert rewards[0] == 0.0 and truncated[0] and not terminated[0]
        assert "was lost" in info["error"][0]
        assert info["status"][1] == "ok" and terminated[1]
        assert envs.replaced == 1 and envs.workers[0].pid != victim.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            still_running(kernels) or (backend == "docker" and _own_containers(victim.pid))
        ):
            time.sleep(0.5)
        assert not still_running(kernels), "kernels outlived their killed owner"
        if backend == "docker":
            assert not _own_containers(victim.pid), "containers outlived their killed owner"
        # the sub-env goes on: next_step autoreset on the new actor, then a scored step
        _, rewards, _, _, info = envs.step([GOOD, GOOD])
        assert rewards[0] == 0.0 and info["step"][0] == 0
        _, rewards, _, _, info = envs.step([GOOD, GOOD])
        assert info["status"][0] == "ok" and rewards[0] > 0.9
    finally:
        envs.close()
        if backend == "docker" and victim is not None:
            _remove_own_containers(victim.pid)  # what a failed run of this test left


def test_too_few_cpus_is_a_clear_error(ray_cluster):
    from etpo_gym.distributed import RayClusterError, RayVectorEnv

    with pytest.raises(RayClusterError, match="1 of 3 env actor") as caught:
        RayVectorEnv(COUNT, num_envs=3, start_timeout=10)
    assert caught.value.cluster_cpus == 2 and caught.value.needed_cpus == 3
    envs = RayVectorEnv(COUNT, num_envs=2, start_timeout=120)  # the failed one freed its CPUs
    envs.close()


def test_bad_settings_are_named(ray_cluster):
    from etpo_gym.distributed import RayVectorEnv

    cases = [
        (dict(num_envs=0), "num_envs=0"),
        (dict(num_cpus=-1), "num_cpus=-1"),
        (dict(strategy="random"), "strategy='random'"),
        (dict(autoreset_mode="sometimes"), "autoreset_mode='sometimes'"),
        (dict(colour=1), "colour"),
        (dict(task="no_such_task"), "no_such_task"),
    ]
    for kwargs, needle in cases:
        with pytest.raises((EtpoGymError, gym.error.Error), match=needle):
            RayVectorEnv("DataSci-v0", **kwargs)
