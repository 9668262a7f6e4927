"""A real local Ray cluster for the distributed tests: a head node and a worker node on this
machine, one CPU each, started once for the session (Ray's own multi-node test harness,
``ray.cluster_utils.Cluster``).

Everything the cluster makes lives under one private directory: Ray's sessions and sockets
(``RAY_TMPDIR``, so ``address="auto"`` finds this cluster and no other), and the nodes' ``TMPDIR``
(the sandboxes' directories). The nodes bind to loopback only and send no usage report. Ray tests
skip where Ray is not installed, and fail in CI (``CI=true``), which must run them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Read by Ray when it is imported: loopback addresses only, and no usage report.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

HERE = Path(__file__).parent
#: where the test agents and envs live, importable on every node and in driver subprocesses
TEST_PATH = os.pathsep.join([str(HERE), str(HERE.parent / "leaderboard")])
NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


def require_ray() -> Any:
    """``ray``, or a skip (a failure in CI) when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Ray is required in CI but cannot be imported: {exc}")
        pytest.skip(f"Ray is not installed (pip install 'etpo-gym[ray]'): {exc}")
    return ray


@dataclass
class LocalCluster:
    """The session's cluster: its address, its ``Cluster`` object and its private directory."""

    cluster: Any
    address: str
    root: Path
    pids: Path
    """each worker that runs a test agent writes a file named by its pid here"""

    def node_env(self, **extra: str) -> dict[str, str]:
        """``env_vars`` for a node of this cluster."""
        return {"TMPDIR": str(self.root / "tmp"), "ETPO_TEST_PIDS": str(self.pids), **extra}

    def add_node(self, **env: str) -> Any:
        """Another node (1 CPU), with more environment variables."""
        return self.cluster.add_node(**NODE_ARGS, env_vars=self.node_env(**env))

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver subprocess that connects with ``--ray auto``."""
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([TEST_PATH, os.environ.get("PYTHONPATH", "")]),
        }


@pytest.fixture(scope="session")
def ray_cluster() -> Any:
    ray = require_ray()
    from ray.cluster_utils import Cluster

    # Short: Ray's unix sockets live below it.
    root = Path(tempfile.mkdtemp(prefix="etpo-ray-"))
    (root / "tmp").mkdir()
    pids = root / "pids"
    pids.mkdir()
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = str(root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (TEST_PATH, saved["PYTHONPATH"]) if p
    )  # the nodes' workers import the test agents and envs
    cluster = None
    try:
        handle = LocalCluster(None, "", root, pids)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={**NODE_ARGS, "include_dashboard": False, "env_vars": handle.node_env()},
        )
        handle.cluster, handle.address = cluster, cluster.address
        handle.add_node()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        yield handle
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pid_files(ray_cluster: LocalCluster) -> Path:
    """The cluster's pid directory, emptied for this test."""
    for entry in ray_cluster.pids.iterdir():
        entry.unlink()
    return ray_cluster.pids
