"""The agent contract: anything that turns an observation into code.

An agent is any object with ``act(observation, info) -> str``, or a plain callable
``f(observation, info) -> str``. Two optional hooks::

    reset(*, task: str, seed: int) -> None              # episode start
    observe(observation, reward, terminated, truncated, info) -> None   # after each step

and an optional ``name``. Nothing to subclass: :func:`run_episode` drives any of them through a
Gymnasium env, and the leaderboard runner uses it for every cell.

Agents by name (:func:`load_agent`): a spec ``NAME`` or ``NAME:ARG`` names an agent that an
installed package registered in the entry-point group ``etpo_gym.agents`` (the agents shipped
with etpo-gym register ``logreg``, ``lm``, ``etpo`` ... the same way); ``module:attr`` and
``path/to/file.py:attr`` name an agent object, class or zero-argument factory in Python code.
This module never imports an agent package: it finds them through ``importlib.metadata``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from etpo_gym.errors import ConfigError

#: Entry-point group in which packages register agents by name (see docs/agents.md).
AGENT_GROUP = "etpo_gym.agents"


@runtime_checkable
class Agent(Protocol):
    """What the env needs from an agent: code for an observation."""

    def act(self, observation: str, info: dict[str, Any]) -> str: ...


def agent_name(agent: Any) -> str:
    """``agent.name``, else the class or function name."""
    name = getattr(agent, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(agent, "__name__", type(agent).__name__)


def is_agent(obj: Any) -> bool:
    """Whether ``obj`` meets the contract: an ``act`` method, or callable itself."""
    return callable(getattr(obj, "act", None)) or (callable(obj) and not isinstance(obj, type))


def registered_agents() -> dict[str, EntryPoint]:
    """Agent names registered by installed packages (entry-point group ``etpo_gym.agents``),
    by name; nothing is imported."""
    return {ep.name: ep for ep in entry_points(group=AGENT_GROUP)}


def resolve_agent(spec: str) -> Callable[[], Any]:
    """A zero-argument constructor for the agent ``spec`` names, after checking that the name is
    known, that its code imports and that it got the argument it needs; calling it builds the
    agent (which may load a model). Raises :class:`ConfigError` naming the spec otherwise.

    Specs: ``NAME`` or ``NAME:ARG`` (an agent registered in the ``etpo_gym.agents`` group:
    ``logreg``, ``lm:PATH``, ``etpo:RUN_DIR``, ...), ``module:attr`` or ``path/to/file.py:attr``
    (an agent object, an agent class, or a zero-argument function returning an agent).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"agent spec {spec!r}: give a name such as logreg, or module:attr")
    spec = spec.strip()
    name, colon, arg = spec.partition(":")
    registered = registered_agents()
    if name in registered:
        return _from_entry_point(spec, registered[name], arg if colon else None)
    if colon and arg:
        return _from_code(spec, name, arg)
    raise ConfigError(
        f"unknown agent {spec!r}; accepted: a registered agent ({describe_agents(registered)}), "
        "module:attr, or path/to/file.py:attr"
    )


def load_agent(spec: str | Any) -> Any:
    """The agent that ``spec`` names (see :func:`resolve_agent`); an agent object is returned
    as it is."""
    if not isinstance(spec, str):
        if not is_agent(spec):
            raise ConfigError(
                f"{spec!r} is not an agent: it needs act(observation, info) -> str or must be "
                "callable as f(observation, info)"
            )
        return spec
    agent = resolve_agent(spec)()
    if not is_agent(agent):
        raise ConfigError(
            f"agent {spec!r} gave {agent!r}, which is not an agent: it needs "
            "act(observation, info) -> str or must be callable as f(observation, info)"
        )
    return agent


def describe_agents(registered: dict[str, EntryPoint] | None = None) -> str:
    """The registered agents as specs: ``logreg, lm[:MODEL], etpo:RUN_DIR, ...`` (a factory's
    argument shown by its parameter's name; this imports the registering modules)."""
    registered = registered_agents() if registered is None else registered
    out = []
    for name in sorted(registered):
        try:
            takes, needs, param = _arity(registered[name].load())
        except Exception:  # a broken plug-in: still list its name
            takes, needs, param = False, False, ""
        out.append(f"{name}:{param}" if needs else f"{name}[:{param}]" if takes else name)
    return ", ".join(out) or "none installed"


def _from_entry_point(spec: str, ep: EntryPoint, arg: str | None) -> Callable[[], Any]:
    try:
        factory = ep.load()
    except Exception as exc:  # a plug-in that fails to import: say which and why
        package = ep.dist.name if ep.dist is not None else "its package"
        raise ConfigError(
            f"agent {ep.name!r} (registered by {package} as {ep.value}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    takes, needs, param = _arity(factory)
    if arg is None and needs:
        raise ConfigError(f"agent {ep.name!r} needs an argument: {ep.name}:{param} (got {spec!r})")
    if arg is not None and not takes:
        raise ConfigError(f"agent {ep.name!r} takes no argument (got {spec!r}); use {ep.name}")
    if arg is not None and not arg:
        raise ConfigError(f"agent spec {spec!r}: empty argument after {ep.name}:")
    return functools.partial(factory, arg) if arg is not None else factory


def _arity(factory: Any) -> tuple[bool, bool, str]:
    """(takes a positional argument, requires one, its name in capitals)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return True, False, "ARG"
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    required = [p for p in positional if p.default is p.empty and p.kind != p.VAR_POSITIONAL]
    return bool(positional), bool(required), positional[0].name.upper() if positional else ""


def _from_code(spec: str, where: str, attr: str) -> Callable[[], Any]:
    module = _load_file(spec, Path(where)) if where.endswith(".py") else _import(spec, where)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"agent {spec!r}: {where} has no attribute {attr!r}")
        target = getattr(target, part)
    if isinstance(target, type):
        return target  # a class: one instance per process
    if not callable(getattr(target, "act", None)) and not _arity(target)[0]:
        return target  # a zero-argument factory
    return lambda: target  # an agent object, or a plain function agent


def _import(spec: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise ConfigError(f"agent {spec!r}: importing {module} failed: {exc}") from exc
        file = module.replace(".", "/") + ".py"
        raise ConfigError(
            f"agent {spec!r}: no module named {module!r} on the Python path; make it importable "
            f"(run from the directory that holds {file}, or add that directory to PYTHONPATH), "
            f"or name the file instead: path/to/{file}:{spec.partition(':')[2]}"
        ) from exc
    except Exception as exc:
        raise ConfigError(f"agent {spec!r}: importing {module} failed: {exc}") from exc


def _load_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"agent {spec!r}: no file {str(path)!r}")
    path = path.resolve()
    name = f"etpo_agent_file_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"agent {spec!r}: {str(path)!r} cannot be loaded as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # classes defined there pickle and introspect like any module's
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"agent {spec!r}: running {path.name} failed: {exc}") from exc
    return module


def _act(agent: Any, observation: str, info: dict[str, Any]) -> str:
    if hasattr(agent, "act"):
        return agent.act(observation, info)
    if callable(agent):
        return agent(observation, info)
    raise ConfigError(
        f"{agent!r} is not an agent: it needs act(observation, info) -> str or must be callable"
    )


@dataclass
class EpisodeResult:
    """What one episode did (rewards per step, statuses, outcome)."""

    rewards: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    success: bool = False
    infra_errors: int = 0
    notebook: str | None = None
    wall_s: float = 0.0
    seed: int | None = None
    """the episode's seed (drawn by the env when ``run_episode`` got none)"""

    @property
    def final_reward(self) -> float | None:
        return self.rewards[-1] if self.rewards else None

    @property
    def best_reward(self) -> float | None:
        return max(self.rewards) if self.rewards else None

    @property
    def steps(self) -> int:
        return len(self.rewards)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            final_reward=self.final_reward,
            best_reward=self.best_reward,
            steps=self.steps,
            steps_to_success=self.steps if self.success else None,
            error_counts=dict(Counter(s for s in self.statuses if s != "ok")),
        )
        return out


def run_episode(
    env: gym.Env, agent: Any, seed: int | None = None, task: str | None = None
) -> EpisodeResult:
    """Run one episode of ``agent`` in ``env`` (reset, then step until it ends)."""
    started = time.perf_counter()
    observation, info = env.reset(seed=seed)
    if hasattr(agent, "reset"):
        episode_seed = info.get("seed", seed if seed is not None else 0)
        agent.reset(task=task or info.get("task", ""), seed=int(episode_seed))
    result = EpisodeResult(seed=info.get("seed", seed))
    done = False
    while not done:
        code = _act(agent, observation, info)
        observation, reward, terminated, truncated, info = env.step(code)
        result.rewards.append(float(reward))
        result.statuses.append(str(info.get("status", "")))
        result.scores.append(info.get("score"))
        result.infra_errors += bool(info.get("infra_error"))
        result.success = result.success or (terminated and info.get("status") == "ok")
        if hasattr(agent, "observe"):
            agent.observe(observation, reward, terminated, truncated, info)
        done = terminated or truncated
    result.notebook = info.get("notebook")
    result.wall_s = time.perf_counter() - started
    return result
