"""The benchmark runner: tasks × agents × seeds, one full episode per cell, resumable.

Each finished cell is appended to ``DIR/results.jsonl`` as one line, written by the parent
process only, flushed and fsynced. A run killed at any point and restarted with the same command
drops a torn last line, skips the cells already recorded, and runs the rest: every cell ends up
in the file exactly once. ``DIR/run.json`` pins the run's settings; restarting with different
ones is an error that names the difference.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym

from etpo_gym.agent import agent_name, run_episode
from etpo_gym.errors import ConfigError, SandboxError

from .suites import Suite, get_suite

BASELINE_SPECS = ("logreg", "random-forest", "hist-gb", "knn", "naive-bayes", "tree")
PACKAGES = ("etpo-gym", "gymnasium", "numpy", "pandas", "scikit-learn", "jupyter_client", "torch")


def load_agent(spec: str) -> Any:
    """An agent from a CLI spec.

    ``logreg``, ``random-forest``, ``hist-gb``, ``knn``, ``naive-bayes``, ``tree``,
    ``random-template`` (baselines); ``lm`` or ``lm:PATH`` (zero-shot causal LM, the starter by
    default); ``etpo:RUN_OR_CHECKPOINT_DIR`` (a trained ETPO policy); ``module:attr`` (an agent
    object, class or factory importable from Python).
    """
    kind, _, arg = spec.partition(":")
    if not arg and (kind in BASELINE_SPECS or kind == "random-template"):
        from etpo_agents.baselines import make_baseline

        return make_baseline(kind)
    if kind == "lm":
        from etpo_agents.lm_agent import LmAgent

        return LmAgent(arg or "starter")
    if kind == "etpo":
        if not arg:
            raise ConfigError("agent 'etpo' needs a checkpoint: etpo:RUN_DIR")
        from etpo_agents.etpo.agent import EtpoAgent

        return EtpoAgent.from_checkpoint(arg)
    if arg:
        try:
            target = getattr(importlib.import_module(kind), arg)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"agent {spec!r}: cannot import {arg} from {kind} ({exc})") from exc
        if isinstance(target, type) or (not hasattr(target, "act") and _is_factory(target)):
            return target()  # a class or a zero-argument factory
        return target  # an agent object or a plain callable agent
    raise ConfigError(
        f"unknown agent {spec!r}; accepted: {', '.join(BASELINE_SPECS)}, random-template, "
        "lm[:PATH], etpo:DIR, or module:attr"
    )


def _is_factory(target: Any) -> bool:
    """A zero-argument function returning an agent (not an agent function itself)."""
    import inspect

    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return len(params) == 0


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


def cell_key(task: str, agent: str, seed: int) -> str:
    return f"{task}|{agent}|{seed}"


def read_results(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of ``results.jsonl``; a torn last line (a kill mid-write) is dropped (and cut off
    the file when ``repair``)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good_end += len(line)
    if repair and good_end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return records


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, in one write, flushed to disk."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


_AGENTS: dict[str, Any] = {}


def run_cell(
    cfg: RunConfig, task_kwargs: dict[str, Any], task: str, agent_spec: str, seed: int, out: str
) -> dict[str, Any]:
    """One episode of one agent on one task with one seed (runs in a worker process)."""
    agent = _AGENTS.get(agent_spec)
    if agent is None:
        agent = _AGENTS[agent_spec] = load_agent(agent_spec)
    started = time.perf_counter()
    record: dict[str, Any] = {"task": task, "agent": agent_spec, "seed": seed}
    env = None
    try:
        env = gym.make(
            cfg.env_id,
            **task_kwargs,
            sandbox=cfg.sandbox,
            max_steps=cfg.max_steps,
            timeout=cfg.timeout,
            record_dir=str(
                Path(out) / "notebooks" / agent_spec.replace("/", "_").replace(":", "_")
            ),
        )
        result = run_episode(env, agent, seed=seed, task=task)
        record.update(result.to_dict())
        record["agent_name"] = agent_name(agent)
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
    record["key"] = cell_key(task, agent_spec, seed)
    return record


def run_benchmark(
    agents: list[str],
    tasks: str,
    seeds: int,
    out: str | os.PathLike[str],
    *,
    sandbox: str = "local",
    jobs: int = 1,
    max_steps: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    first_seed: int = 0,
    env_id: str = "DataSci-v0",
) -> Path:
    """Run (or finish) a benchmark into ``out``; returns the directory. ``env_id``: any registered
    id of the family (``DataSciNotebook-v0``: ``max_steps`` counts cells)."""
    from tqdm.auto import tqdm

    if not agents:
        raise ConfigError("--agents: give at least one agent")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: must be >= 1")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    suite: Suite = get_suite(tasks)
    for spec in agents:  # fail fast on a bad spec, before any episode runs
        if not spec.startswith(("lm", "etpo:")):
            load_agent(spec)
    cfg = RunConfig(
        suite=suite.id,
        suite_digest=suite.digest,
        tasks=[t.name for t in suite.tasks],
        agents=list(agents),
        seeds=list(range(first_seed, first_seed + seeds)),
        sandbox=sandbox,
        env_id=env_id,
        max_steps=max_steps,
        timeout=timeout,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_json = out / "run.json"
    if run_json.exists():
        saved = json.loads(run_json.read_text())
        diff = {
            k: (saved["config"].get(k), v)
            for k, v in asdict(cfg).items()
            if saved["config"].get(k) != v
        }
        if diff:
            detail = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{out} holds a different run ({detail}); use another --out")
    else:
        meta = {
            "config": asdict(cfg),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(),
        }
        tmp = run_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(run_json)

    results = out / "results.jsonl"
    done = {r["key"] for r in read_results(results, repair=True)}
    task_kwargs = {t.name: t.env_kwargs() for t in suite.tasks}
    todo = [
        (task, agent, seed)
        for task in cfg.tasks
        for agent in cfg.agents
        for seed in cfg.seeds
        if cell_key(task, agent, seed) not in done
    ]
    bar = tqdm(
        total=len(cfg.tasks) * len(cfg.agents) * len(cfg.seeds),
        initial=len(done),
        desc=f"bench {suite.id}",
        unit="cell",
        disable=not progress,
    )
    try:
        if jobs == 1:
            for task, agent, seed in todo:
                append_result(
                    results, run_cell(cfg, task_kwargs[task], task, agent, seed, str(out))
                )
                bar.update(1)
        else:
            with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [
                    pool.submit(run_cell, cfg, task_kwargs[t], t, a, s, str(out))
                    for t, a, s in todo
                ]
                for future in cf.as_completed(futures):
                    append_result(results, future.result())
                    bar.update(1)
    finally:
        bar.close()
    from .board import render

    render(out)
    return out
