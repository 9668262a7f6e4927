"""The benchmark runner: tasks × agents × seeds, one full episode per cell, resumable.

Each finished cell is appended to ``DIR/results.jsonl`` as one line (see :mod:`.results`). A run
killed at any point and restarted with the same command drops a torn last line, skips the cells
already recorded, and runs the rest: every cell ends up in the file exactly once. ``DIR/run.json``
pins the run's settings; restarting with different ones is an error that names the difference.
Everything is checked (agents, tasks, env id and keywords, sandbox) before ``DIR`` is made, so
bad input leaves nothing behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import pickle
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym

import etpo_gym
from etpo_gym.agent import agent_name, is_agent, load_agent, resolve_agent, run_episode
from etpo_gym.errors import ConfigError, EtpoGymError, SandboxError, TaskError
from etpo_gym.sandbox import resolve_backend

from .board import render
from .results import append_result, cell_key, dumps, read_results, read_run, write_atomic
from .suites import SUITES, Suite, get_suite

PACKAGES = ("etpo-gym", "gymnasium", "numpy", "pandas", "scikit-learn", "jupyter_client", "torch")
#: Keywords the runner passes to ``gym.make`` itself; ``env_kwargs`` may not set them.
RUNNER_KWARGS = ("task", "target", "drop", "sandbox", "max_steps", "timeout", "record_dir")


@dataclass
class RunConfig:
    """What a run is: changing any of it needs a new output directory."""

    suite: str
    suite_digest: str
    tasks: list[str]
    agents: list[str]
    seeds: list[int]
    sandbox: str = "local"
    env_id: str = "DataSci-v0"
    max_steps: int = 5
    timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    """more ``gym.make`` keywords (``--env-kwargs``)"""


class CellsFailed(EtpoGymError, RuntimeError):
    """Some cells could not be run (an agent that cannot be built in a worker, a worker that
    died); every other cell was recorded, and re-running the command retries these.

    Attributes:
        failed: ``{cell key: "Type: message"}`` of the cells left out.
        total: cells in the run.
    """

    def __init__(self, failed: dict[str, str], total: int) -> None:
        self.failed = dict(failed)
        self.total = total
        first = next(iter(self.failed.items()))
        super().__init__(
            f"{len(self.failed)} of {total} cell(s) could not be run and are not in "
            f"results.jsonl (re-run the same command to retry them); first: {first[0]}: {first[1]}"
        )


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a score depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


_AGENTS: dict[str, Any] = {}  # per process: each agent is built once and reused for its cells


def run_cell(
    cfg: RunConfig,
    task_kwargs: dict[str, Any],
    task: str,
    agent_key: str,
    agent: Any,
    seed: int,
    out: str,
) -> dict[str, Any]:
    """One episode of one agent on one task with one seed (may run in a worker process).

    ``agent`` is an agent object, or a spec that this process builds once.
    """
    if isinstance(agent, str):
        if agent_key not in _AGENTS:
            _AGENTS[agent_key] = load_agent(agent)
        agent = _AGENTS[agent_key]
    started = time.perf_counter()
    record: dict[str, Any] = {
        "task": task,
        "agent": agent_key,
        "agent_name": agent_name(agent),
        "seed": seed,
    }
    env = None
    try:
        env = gym.make(
            cfg.env_id,
            **task_kwargs,
            **cfg.extra,
            sandbox=cfg.sandbox,
            max_steps=cfg.max_steps,
            timeout=cfg.timeout,
            record_dir=str(Path(out) / "notebooks" / agent_key.replace("/", "_").replace(":", "_")),
        )
        record["metric"] = env.unwrapped.task.metric
        result = run_episode(env, agent, seed=seed, task=task)
        record.update(result.to_dict())
    except SandboxError as exc:  # the machinery failed, not the agent: excluded from scores
        record.update(
            rewards=[], statuses=[], success=False, infra_errors=1, final_reward=None,
            best_reward=None, steps=0, error_counts={}, notebook=None,
            infra_detail=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip
    except Exception as exc:  # the agent itself raised: its failure, scored as an error
        record.update(
            rewards=[], statuses=["agent_error"], success=False, infra_errors=0,
            final_reward=-1.0, best_reward=-1.0, steps=0, error_counts={"agent_error": 1},
            notebook=None, agent_error=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip
    finally:
        if env is not None:
            env.close()
    record["wall_s"] = round(time.perf_counter() - started, 3)
    record["key"] = cell_key(task, agent_key, seed)
    return record


def _suite(tasks: str) -> Suite:
    try:
        return get_suite(tasks)
    except TaskError as exc:
        suites = ", ".join(s.id for s in SUITES.values())
        raise ConfigError(
            f"--tasks {tasks!r} is neither a suite ({suites}) nor a list of known tasks: {exc}"
        ) from exc


def _agents(agents: Sequence[str | Any], jobs: int) -> dict[str, Any]:
    """``{key: agent object or spec}``: specs checked (and, for one job, built) here, in the
    parent; worker processes build their own from the spec."""
    if isinstance(agents, str) or not agents:
        raise ConfigError(f"agents={agents!r}: give a list of agents, e.g. ['logreg', MyAgent()]")
    out: dict[str, Any] = {}
    for item in agents:
        if isinstance(item, str):
            key = item.strip()
            if jobs == 1:
                built = load_agent(key)
            else:  # workers build their own; here only check that the spec is sound
                resolve_agent(key)
                built = key
        else:
            if not is_agent(item):
                load_agent(item)  # raises the contract error
            key, built = agent_name(item), item
            if jobs > 1:
                try:
                    pickle.dumps(item)
                except Exception as exc:
                    raise ConfigError(
                        f"agent {key!r} cannot be sent to worker processes (jobs={jobs}): "
                        f"{type(exc).__name__}: {exc}; use jobs=1, or a spec such as module:attr"
                    ) from exc
        if key in out:
            raise ConfigError(f"two agents are named {key!r}; give each agent its own name")
        out[key] = built
    return out


def _env_check(
    env_id: str, extra: dict[str, Any], task_kwargs: dict[str, Any], sandbox: str
) -> None:
    """Build (not start) one env, so a bad id or keyword fails before any file is written."""
    if env_id.split(":")[-1] not in etpo_gym.ENV_IDS:
        raise ConfigError(
            f"env id {env_id!r} is not accepted; accepted: {', '.join(etpo_gym.ENV_IDS)}"
        )
    clash = sorted(set(extra) & set(RUNNER_KWARGS))
    if clash:
        raise ConfigError(
            f"env keyword(s) {clash} are set by the runner; use its own options "
            "(tasks, sandbox, max_steps, timeout)"
        )
    try:
        gym.make(env_id, **task_kwargs, **extra, sandbox=sandbox).close()
    except TypeError as exc:  # gym.make appends every keyword's value: keep the first sentence
        reason = str(exc).split(" was raised from")[0]
        raise ConfigError(f"env keywords {extra}: not accepted by {env_id}: {reason}") from exc


def resolve_sandbox(requested: str) -> tuple[str, str]:
    """``(backend, why)``: the backend ``requested`` means here (``auto`` → Docker or local)
    and, for ``auto``, a note saying why."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = resolve_backend(requested)
    if caught:
        return backend, f" ({caught[0].message})"
    if requested == "auto":
        return backend, " (auto: the Docker engine answers and the sandbox image is built)"
    return backend, ""


def run_benchmark(
    agents: Sequence[str | Any],
    tasks: str,
    seeds: int,
    out: str | os.PathLike[str],
    *,
    sandbox: str = "auto",
    jobs: int = 1,
    max_steps: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    first_seed: int = 0,
    env_id: str = "DataSci-v0",
    env_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    ray: str | None = None,
    ray_cpus: float = 1.0,
) -> Path:
    """Run (or finish) a benchmark into ``out``; returns the directory.

    Args:
        agents: agent specs (``"logreg"``, ``"lm"``, ``"etpo:RUN_DIR"``, ``"module:attr"``,
            ``"path/to/file.py:attr"``) and agent objects, in any mix; an object's key on the
            board is its ``name`` (or class name).
        tasks: a suite (``core-v0``) or comma-separated task names.
        seeds: episodes per agent and task, with seeds ``first_seed ...``.
        out: the run directory; re-running the same call resumes it.
        sandbox: ``auto`` (Docker when usable, else local), ``local`` or ``docker``; resolved once
            here and recorded.
        jobs: cells in parallel (worker processes; object agents must pickle).
        env_id, env_kwargs: the env and more ``gym.make`` keywords (``DataSciNotebook-v0``:
            ``max_steps`` counts cells).
        log: called with one line saying which sandbox backend runs the cells, once every
            argument has been checked (and, with ``ray``, one saying where the cells go).
        ray: run the cells as Ray tasks on this cluster (``auto``, ``local``, ``host:port``,
            ``ray://host:port``) instead of local processes; needs the ``ray`` extra. Results are
            the same file with the same exactly-once guarantee (see
            :mod:`etpo_gym.distributed.bench`); ``sandbox="auto"`` is decided on the cluster.
        ray_cpus: CPUs each cell reserves on the cluster (1: one cell per CPU a node offers).
    """
    from tqdm.auto import tqdm

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds {seeds!r}: must be an integer >= 1")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs {jobs!r}: must be an integer >= 1")
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise ConfigError(f"--first-seed {first_seed!r}: must be an integer >= 0")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"--max-steps {max_steps!r}: must be an integer >= 1")
    if not timeout or timeout <= 0:
        raise ConfigError(f"--timeout {timeout!r}: must be a positive number of seconds")
    if ray is not None and jobs != 1:
        raise ConfigError(
            f"--jobs {jobs} with --ray: the cluster's CPUs set how many cells run at once; "
            "leave --jobs out"
        )
    if ray is not None and (
        isinstance(ray_cpus, bool) or not isinstance(ray_cpus, (int, float)) or not ray_cpus > 0
    ):
        raise ConfigError(f"--ray-cpus {ray_cpus!r}: must be a number > 0 (CPUs per cell)")
    suite = _suite(tasks)
    task_kwargs = {t.name: t.env_kwargs() for t in suite.tasks}
    extra = dict(env_kwargs or {})
    members = _agents(agents, 2 if ray is not None else jobs)  # Ray workers build their own
    cluster = None
    if ray is not None:
        from etpo_gym.distributed.bench import RayCellRunner

        cluster = RayCellRunner(ray, num_cpus=ray_cpus)
    try:
        backend, why = cluster.resolve_sandbox(sandbox) if cluster else resolve_sandbox(sandbox)
        _env_check(env_id, extra, next(iter(task_kwargs.values())), backend)
        if log is not None:
            log(f"sandbox {backend}{why}")
        cfg = RunConfig(
            suite=suite.id,
            suite_digest=suite.digest,
            tasks=[t.name for t in suite.tasks],
            agents=list(members),
            seeds=list(range(first_seed, first_seed + seeds)),
            sandbox=backend,
            env_id=env_id,
            max_steps=max_steps,
            timeout=float(timeout),
            extra=extra,
        )
        out = Path(out)
        _open_run_dir(cfg, out)
        results = out / "results.jsonl"
        done = {r["key"] for r in read_results(results, repair=True)}
        todo = [
            (task, key, seed)
            for task in cfg.tasks
            for key in cfg.agents
            for seed in cfg.seeds
            if cell_key(task, key, seed) not in done
        ]
        bar = tqdm(
            total=len(cfg.tasks) * len(cfg.agents) * len(cfg.seeds),
            initial=len(done),
            desc=f"bench {suite.id}",
            unit="cell",
            disable=not progress,
        )

        def record(row: dict[str, Any]) -> None:
            append_result(results, row)
            bar.update(1)

        failed: dict[str, str] = {}
        try:
            if cluster is not None:
                try:
                    cluster.run(cfg, task_kwargs, members, todo, out, record, log=log)
                finally:
                    failed = cluster.failed
            elif jobs == 1:
                for task, key, seed in todo:
                    record(
                        run_cell(cfg, task_kwargs[task], task, key, members[key], seed, str(out))
                    )
            else:
                failed = _run_pool(cfg, task_kwargs, members, todo, out, jobs, record)
        finally:
            bar.close()
    finally:
        if cluster is not None:
            cluster.close()
    render(out)
    if failed:
        raise CellsFailed(failed, len(cfg.tasks) * len(cfg.agents) * len(cfg.seeds))
    return out


def _run_pool(
    cfg: RunConfig,
    task_kwargs: dict[str, dict[str, Any]],
    members: dict[str, Any],
    todo: list[tuple[str, str, int]],
    out: Path,
    jobs: int,
    record: Callable[[dict[str, Any]], None],
) -> dict[str, str]:
    """Run ``todo`` in ``jobs`` worker processes, recording each cell as it finishes; returns
    the cells that raised (``{key: error}``), which are left out of the results.

    A cell that fails does not stop the others. If the collection itself is interrupted
    (Ctrl-C), queued cells are cancelled and the running ones are still recorded when they end.
    """
    failed: dict[str, str] = {}
    recorded: set[Any] = set()
    with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(run_cell, cfg, task_kwargs[t], t, k, members[k], s, str(out)): (t, k, s)
            for t, k, s in todo
        }
        try:
            for future in cf.as_completed(futures):
                recorded.add(future)
                try:
                    row = future.result()
                except Exception as exc:  # this cell only (a broken pool fails each pending one)
                    failed[cell_key(*futures[future])] = f"{type(exc).__name__}: {exc}"
                    continue
                record(row)
        except BaseException:
            for future in futures:
                future.cancel()
            for future in futures:
                if future in recorded or future.cancelled():
                    continue
                with contextlib.suppress(Exception):
                    record(future.result())
            raise
    return failed


def _open_run_dir(cfg: RunConfig, out: Path) -> None:
    """Make ``out`` with its ``run.json``, or check that the run there is ``cfg``'s."""
    if (out / "run.json").exists():
        saved = read_run(out)["config"]
        diff = {k: (saved.get(k), v) for k, v in asdict(cfg).items() if saved.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{out} holds a different run ({detail}); use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": asdict(cfg),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }
    write_atomic(out / "run.json", dumps(meta, indent=2) + "\n")
