"""The connection to a Ray cluster, and what every distributed part needs from it: the sandbox
backend decided on the cluster, task data in the object store, the nodes that are alive.

This package is the only part of etpo-gym that imports ``ray`` (an optional extra:
``pip install "etpo-gym[ray]"``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from etpo_gym.errors import ConfigError, EtpoGymError
from etpo_gym.tasks.base import Dataset, Task

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test without ray
    raise ConfigError(
        f"Ray is not installed ({exc}); install the extra: pip install 'etpo-gym[ray]'"
    ) from exc


class RayClusterError(EtpoGymError, RuntimeError):
    """The cluster cannot do what was asked (too few CPUs, an actor that cannot start, a cell
    that kept losing its worker).

    Attributes:
        address: the cluster address given (``auto``, ``local``, ``host:port``).
        needed_cpus: CPUs the request needed, when that was the problem.
        cluster_cpus: CPUs the alive nodes offer, when that was the problem.
    """

    def __init__(
        self,
        message: str,
        *,
        address: str = "",
        needed_cpus: float | None = None,
        cluster_cpus: float | None = None,
    ) -> None:
        super().__init__(message)
        self.address = address
        self.needed_cpus = needed_cpus
        self.cluster_cpus = cluster_cpus


#: Errors of the cluster itself (a worker, an actor, a node or an object was lost); an exception
#: raised by our own code on a worker arrives as ``RayTaskError`` instead and is not one of them.
SYSTEM_ERRORS: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.TaskUnschedulableError,
    ray.exceptions.ActorUnschedulableError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.RuntimeEnvSetupError,
)


def describe_failure(exc: BaseException) -> str:
    """``Type: first line`` of a Ray failure (its messages run to many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


class Connection:
    """This process's connection to a Ray cluster.

    ``address``: ``"auto"`` (the cluster that ``ray start`` runs on this machine, or
    ``RAY_ADDRESS``), ``"local"`` (start a private one-node Ray here), ``"host:port"`` (a
    cluster's GCS) or ``"ray://host:10001"`` (Ray Client). When this process is already connected
    (``ray.init`` was called), that connection is used and left open on :meth:`close`.
    """

    def __init__(self, address: str) -> None:
        if not isinstance(address, str) or not address.strip():
            raise ConfigError(
                f"--ray {address!r}: give a cluster address (host:port, ray://host:port), "
                "'auto' (the cluster on this machine) or 'local' (a private one-node Ray)"
            )
        self.address = address.strip()
        self.owned = False
        if ray.is_initialized():
            return
        try:
            ray.init(
                address=None if self.address == "local" else self.address,
                log_to_driver=False,  # cells' output stays in their notebooks and records
                logging_level=logging.WARNING,
                include_dashboard=False if self.address == "local" else None,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"--ray {self.address}: cannot connect to a Ray cluster "
                f"({describe_failure(exc)}); start one with `ray start --head` (then use auto) "
                "or give its address as host:port"
            ) from exc
        self.owned = True

    def close(self) -> None:
        """Disconnect if this object connected (harmless twice)."""
        if self.owned and ray.is_initialized():
            ray.shutdown()
        self.owned = False

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class NodeInfo:
    """An alive node: its Ray id, address and CPUs."""

    node_id: str
    address: str
    cpus: float


def alive_nodes() -> list[NodeInfo]:
    """The alive nodes of the cluster, by node id."""
    nodes = [
        NodeInfo(n["NodeID"], n.get("NodeManagerAddress", ""), float(n["Resources"].get("CPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    ]
    return sorted(nodes, key=lambda n: n.node_id)


def current_node() -> str:
    """The id of the node this code runs on (a worker's or the driver's)."""
    return ray.get_runtime_context().get_node_id()


def _decide_sandbox(requested: str) -> tuple[str, str, str]:
    from etpo_gym.sandbox import resolve_backend

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = resolve_backend(requested)
    return backend, str(caught[0].message) if caught else "", current_node()


def resolve_sandbox_on_cluster(requested: str, num_cpus: float = 1.0) -> tuple[str, str]:
    """``(backend, why)``: what ``requested`` means on the cluster's workers, decided once on one
    of them (the driver may have no Docker while the workers do), so that every cell and env of a
    run uses the same backend; a node that lacks it fails with infra errors, not silently with
    another backend."""
    from etpo_gym.sandbox import SANDBOXES

    if requested not in SANDBOXES:
        raise ConfigError(f"sandbox={requested!r} is not one of {SANDBOXES}")
    if requested != "auto":
        return requested, ""
    probe = ray.remote(_decide_sandbox).options(num_cpus=num_cpus, max_retries=3)
    backend, note, node = ray.get(probe.remote(requested))
    why = note or "the Docker engine answers and the sandbox image is built"
    return backend, f" (auto, decided on Ray node {node[:12]}: {why})"


class _Loaded:
    """A task loader that returns data already loaded (picklable, unlike a lambda)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __call__(self) -> Dataset:
        return self.dataset


def portable_task(task: Task) -> Task:
    """``task`` with its data loaded here and carried along, so that a worker never loads or
    re-reads it (the CSV behind a task may exist on the driver only)."""
    return dataclasses.replace(task, loader=_Loaded(task.data))


def ship_task(task: Task) -> Any:
    """Put ``task`` (with its data) into the object store once; returns its ``ObjectRef``.

    A task or actor that takes the ref as an argument gets the object from its node's store:
    Ray copies it to each node once, and workers on one node share that copy (numpy arrays are
    mapped, not copied). Objects under Ray's inline limit (100 KiB) travel with each call instead.
    """
    return ray.put(portable_task(task))
