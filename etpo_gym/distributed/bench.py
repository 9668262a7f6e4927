"""Leaderboard cells as Ray tasks (``etpo-gym bench --ray``).

The driver keeps the exactly-once guarantee of the local runner: a cell runs in a Ray task and
returns its record; only the driver appends records to ``results.jsonl`` (and writes the episode
notebooks the records point to), each cell at most once. A cell whose worker process or node is
lost is run again; a cell whose sandbox failed on a node (an infra error: no Docker engine there,
say) is run again on a node where it has not failed, and only when every node failed it (or it
ran out of attempts) is the infra-error record kept, counted apart and never scored. Killing the
driver ends its tasks with it, and re-running the command runs only the cells not yet recorded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError
from etpo_gym.leaderboard.results import cell_key, write_atomic
from etpo_gym.leaderboard.runner import RunConfig, run_cell
from etpo_gym.tasks import get_task
from etpo_gym.tasks.base import Task

from .cluster import (
    SYSTEM_ERRORS,
    Connection,
    alive_nodes,
    current_node,
    describe_failure,
    ray,
    resolve_sandbox_on_cluster,
    ship_task,
)

_NOTEBOOK_TEXT = "_notebook_text"  # travels back with the record; never written to results


def _cell(
    cfg: RunConfig, task: Task, task_name: str, agent_key: str, agent: Any, seed: int
) -> dict[str, Any]:
    """One cell on a worker: the episode's notebook is recorded in a private directory and sent
    back with the record, for the driver to write."""
    node = current_node()
    with tempfile.TemporaryDirectory(prefix="etpo-gym-cell-") as tmp:
        record = run_cell(cfg, {"task": task}, task_name, agent_key, agent, seed, tmp)
        notebook = record.get("notebook")
        if notebook:
            record[_NOTEBOOK_TEXT] = Path(notebook).read_text("utf-8")
            record["notebook"] = os.path.relpath(notebook, tmp)
    record["ray_node"] = node
    return record


_remote_cell = ray.remote(_cell)


@dataclass
class _Cell:
    task: str
    agent: str
    seed: int
    attempts: int = 0
    failed_on: set[str] = field(default_factory=set)
    """nodes where this cell's sandbox failed (infra errors)"""
    retries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return cell_key(self.task, self.agent, self.seed)


class RayCellRunner:
    """Runs a benchmark's cells on a Ray cluster; the caller appends what :meth:`run` yields.

    Args:
        address: the cluster (see :class:`~etpo_gym.distributed.cluster.Connection`).
        num_cpus: CPUs each cell reserves (1: one cell per CPU a node offers).
        max_attempts: runs of one cell (lost workers and infra errors together) before its
            infra-error record is kept (a sandbox failure) or the cell is left out and named in
            :attr:`failed` (lost workers).
    """

    def __init__(self, address: str, num_cpus: float = 1.0, max_attempts: int = 4) -> None:
        if not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
            raise ConfigError(f"num_cpus={num_cpus!r} must be a number > 0 (CPUs per cell)")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"max_attempts={max_attempts!r} must be an integer >= 1")
        self.num_cpus = float(num_cpus)
        self.max_attempts = max_attempts
        self.failed: dict[str, str] = {}
        """cells that could not be run (``{key: error}``); the others are yielded regardless"""
        self.connection = Connection(address)

    def resolve_sandbox(self, requested: str) -> tuple[str, str]:
        """The backend every cell uses, decided on the cluster (see
        :func:`~etpo_gym.distributed.cluster.resolve_sandbox_on_cluster`)."""
        return resolve_sandbox_on_cluster(requested, self.num_cpus)

    def close(self) -> None:
        """Disconnect if this runner connected (harmless twice)."""
        self.connection.close()

    def run(
        self,
        cfg: RunConfig,
        task_kwargs: dict[str, dict[str, Any]],
        members: dict[str, Any],
        todo: list[tuple[str, str, int]],
        out: Path,
        record: Callable[[dict[str, Any]], None],
        log: Callable[[str], None] | None = None,
    ) -> None:
        """Run the ``todo`` cells; calls ``record`` with each finished cell's record once, as
        each finishes, with its notebook already written under ``out``. A cell that cannot be
        run does not stop the others: it is left out and named in :attr:`failed`. When this is
        interrupted (Ctrl-C, or ``record`` raised), the cells already finished are still
        recorded and the running ones are cancelled (their sandboxes end with their workers)."""
        if not todo:
            return
        needed = {task for task, _, _ in todo}
        tasks = {
            name: ship_task(get_task(kw["task"], target=kw.get("target"), drop=kw.get("drop")))
            for name, kw in task_kwargs.items()
            if name in needed
        }
        agents = {k: v if isinstance(v, str) else ray.put(v) for k, v in members.items()}
        if log is not None:
            nodes = alive_nodes()
            log(
                f"ray: {len(todo)} cell(s) on {len(nodes)} node(s) with "
                f"{sum(n.cpus for n in nodes):g} CPU; {len(tasks)} task(s) in the object store"
            )
        pending: dict[Any, _Cell] = {}

        def submit(cell: _Cell, node: str | None = None) -> None:
            cell.attempts += 1
            strategy: Any = "SPREAD"
            if node is not None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            ref = _remote_cell.options(
                num_cpus=self.num_cpus, max_retries=0, scheduling_strategy=strategy
            ).remote(cfg, tasks[cell.task], cell.task, cell.agent, agents[cell.agent], cell.seed)
            pending[ref] = cell

        for task, agent, seed in todo:
            submit(_Cell(task, agent, seed))
        recorded: set[str] = set()

        def finish(row: dict[str, Any], cell: _Cell) -> None:
            if cell.key in recorded:  # cannot happen: one submission in flight per cell
                return
            recorded.add(cell.key)
            record(self._finish(row, cell, out))

        try:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except SYSTEM_ERRORS as exc:
                    cell.retries.append({"node": None, "error": describe_failure(exc)})
                    if cell.attempts < self.max_attempts:
                        submit(cell)
                    else:
                        self.failed[cell.key] = (
                            f"lost its Ray worker on each of {cell.attempts} attempts: "
                            + "; ".join(r["error"] for r in cell.retries)
                        )
                    continue
                except ray.exceptions.RayTaskError as exc:  # not the cluster's: not retried
                    cause = getattr(exc, "cause", None) or exc  # the worker's own exception
                    self.failed[cell.key] = (
                        f"{type(cause).__name__}: {str(cause)[:300]} (is the agent importable "
                        "on the workers? see docs/scale-out.md)"
                    )
                    continue
                if row.get("infra_errors"):
                    node = row["ray_node"]
                    cell.failed_on.add(node)
                    detail = str(row.get("infra_detail") or "infra error").splitlines()
                    cell.retries.append({"node": node, "error": detail[0][:300]})
                    others = [
                        n.node_id
                        for n in alive_nodes()
                        if n.cpus >= self.num_cpus and n.node_id not in cell.failed_on
                    ]
                    if others and cell.attempts < self.max_attempts:
                        submit(cell, others[cell.attempts % len(others)])
                        continue
                finish(row, cell)
        except BaseException:
            # An aborted run keeps what is done: the finished cells whose records stand (no
            # infra error) are recorded; the others end (their sandboxes go with them).
            done = (
                ray.wait(list(pending), num_returns=len(pending), timeout=0)[0] if pending else []
            )
            for ref in done:
                cell = pending.pop(ref)
                with contextlib.suppress(Exception):
                    row = ray.get(ref)
                    if not row.get("infra_errors"):
                        finish(row, cell)
            raise
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    @staticmethod
    def _finish(record: dict[str, Any], cell: _Cell, out: Path) -> dict[str, Any]:
        text = record.pop(_NOTEBOOK_TEXT, None)
        if text is not None and record.get("notebook"):
            path = out / record["notebook"]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
            record["notebook"] = str(path)
        record["attempts"] = cell.attempts
        if cell.retries:
            record["retries"] = cell.retries
        return record
