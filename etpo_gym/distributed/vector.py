"""A Gymnasium vector env whose sub-envs are Ray actors spread over a cluster."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

import etpo_gym
from etpo_gym.errors import ConfigError
from etpo_gym.tasks import get_task
from etpo_gym.tasks.base import Task

from .cluster import (
    SYSTEM_ERRORS,
    Connection,
    RayClusterError,
    alive_nodes,
    current_node,
    describe_failure,
    ray,
    resolve_sandbox_on_cluster,
    ship_task,
)

STRATEGIES: tuple[str, ...] = ("spread", "default")


class EnvWorker:
    """One sub-env in a Ray actor: the env (and so its sandbox) lives on the actor's node."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], task: Task | None) -> None:
        if task is not None:
            env_kwargs = {**env_kwargs, "task": task}
        self.env = gym.make(env_id, **env_kwargs)

    def describe(self) -> dict[str, Any]:
        import os

        env = self.env
        return {
            "node_id": current_node(),
            "pid": os.getpid(),
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "metadata": dict(env.metadata),
            "render_mode": env.render_mode,
            "spec": env.spec,
        }

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict]:
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict, Any]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, info, None

    def step_same(self, action: Any) -> tuple[Any, float, bool, bool, dict, Any]:
        """A step, and the next episode's reset within it when the episode ended (SAME_STEP)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        final = None
        if terminated or truncated:
            final = (obs, info)
            obs, info = self.env.reset()
        return obs, reward, terminated, truncated, info, final

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        attr = self.env.get_wrapper_attr(name)
        return attr(*args, **kwargs) if callable(attr) else attr

    def set_attr(self, name: str, value: Any) -> None:
        self.env.set_wrapper_attr(name, value)

    def close(self) -> None:
        self.env.close()


_RemoteEnvWorker = ray.remote(EnvWorker)


def _check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    """Build (not start) one env here, so that a bad id or keyword fails before any actor."""
    try:
        gym.make(env_id, **kwargs).close()
    except gym.error.Error as exc:
        raise ConfigError(f"env id {env_id!r}: {exc}") from exc
    except TypeError as exc:  # gym.make appends every keyword's value: keep the first sentence
        reason = str(exc).split(" was raised from")[0]
        raise ConfigError(f"env keywords not accepted by {env_id}: {reason}") from exc


@dataclass(frozen=True)
class WorkerInfo:
    """Where a sub-env runs: its node's Ray id and its worker process id."""

    node_id: str
    pid: int


class RayVectorEnv(gym.vector.VectorEnv):
    """Sub-envs as Ray actors across a cluster, with the Gymnasium vector API.

    Each sub-env is a Ray actor holding one ``gym.make(env_id, **env_kwargs)``; its sandbox
    (kernel process or Docker container) runs on that actor's node, with that node's engine.
    ``reset``/``step`` call every actor at once and wait for all. Autoreset modes
    (``next_step``, the default; ``same_step``; ``disabled``), seeding (``seed=s`` gives
    ``s, s+1, ...``), batched observations and infos (``_key`` masks, ``final_obs`` and
    ``final_info`` in ``same_step`` mode) are those of ``gym.make_vec``: a deterministic policy gets
    the same transitions from this env as from ``SyncVectorEnv`` (a test compares them).

    Placement: each actor asks for ``num_cpus`` CPUs (default 1, so a node hosts one sub-env
    per CPU it offers and adding nodes adds throughput; 0.5 packs two per CPU), spread over the
    nodes (``strategy="spread"``) or placed by Ray's default policy (``"default"``: fill a node,
    then the next). ``ray_options`` go to ``actor.options`` (custom resources, ``runtime_env``).

    Task data: for the DataSci envs, the driver loads the task once (a CSV may exist on the
    driver only) and puts it in Ray's object store; each node receives it once. ``sandbox="auto"``
    (the env's default) is decided once, on a worker, so every sub-env uses the same backend.

    Faults: when an actor dies (its worker process or node was lost), its step comes back as an
    infrastructure error (reward 0, ``truncated``, ``info["infra_error"] = True``, ``status``
    ``infra_error``: learners drop it) and the sub-env goes on in a new actor, placed wherever the
    cluster has room. The lost kernels and containers die with their owner (the sandbox's orphan
    rule). An exception raised by the env itself is raised here, as from ``SyncVectorEnv``.

    Args:
        env_id: a registered env id (``DataSci-v0``, ``module:Id`` ...).
        num_envs: sub-envs (actors).
        address: the cluster (``auto``, ``local``, ``host:port``, ``ray://...``); ``None`` uses
            this process's connection, or ``auto``.
        num_cpus: CPUs each actor reserves.
        strategy: ``"spread"`` or ``"default"``.
        autoreset_mode: as for ``gym.make_vec``.
        start_timeout: seconds to wait for the actors to be placed and built before giving up
            with :class:`RayClusterError` (which says how many CPUs the cluster has).
        ray_options: more ``actor.options(...)`` keywords.
        **env_kwargs: ``gym.make`` keywords of each sub-env.
    """

    def __init__(
        self,
        env_id: str = "DataSci-v0",
        num_envs: int = 1,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        strategy: str = "spread",
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        start_timeout: float = 300.0,
        ray_options: dict[str, Any] | None = None,
        **env_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs={num_envs!r} must be an integer >= 1")
        if not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
            raise ConfigError(f"num_cpus={num_cpus!r} must be a number > 0 (CPUs per sub-env)")
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy={strategy!r} is not one of {STRATEGIES}")
        if not start_timeout or start_timeout <= 0:
            raise ConfigError(f"start_timeout={start_timeout!r} must be a positive number")
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            accepted = [m.value for m in AutoresetMode]
            raise ConfigError(
                f"autoreset_mode={autoreset_mode!r} is not one of {accepted}"
            ) from None
        self.num_envs = num_envs
        self.env_id = env_id
        self._num_cpus = float(num_cpus)
        self._strategy = "SPREAD" if strategy == "spread" else "DEFAULT"
        self._ray_options = dict(ray_options or {})
        self._start_timeout = float(start_timeout)
        self._actors: list[Any] = []
        self.workers: list[WorkerInfo] = []
        """where each sub-env runs now"""
        self.replaced = 0
        """actors replaced after a fault"""
        self._connection = Connection(address or "auto")
        try:
            self._env_kwargs, self._task_ref = self._prepare(env_id, dict(env_kwargs))
            self._actors = [self._spawn() for _ in range(num_envs)]
            described = self._await(self._actors, "start")
        except BaseException:
            self.close()
            raise
        first = described[0]
        self.workers = [WorkerInfo(d["node_id"], d["pid"]) for d in described]
        self.single_observation_space = first["observation_space"]
        self.single_action_space = first["action_space"]
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {**first["metadata"], "autoreset_mode": self.autoreset_mode}
        self.render_mode = first["render_mode"]
        self.spec = first["spec"]
        self._obs: list[Any] = [None] * num_envs
        self._autoreset_envs = np.zeros(num_envs, dtype=np.bool_)
        self._replacement_seeds = np.random.default_rng()

    # -- construction ----------------------------------------------------------------------------

    def _prepare(self, env_id: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The actors' env keywords, checked by building (not starting) one env here, and the
        task's object ref for the DataSci envs."""
        task_ref = None
        if env_id.split(":")[-1] in etpo_gym.ENV_IDS:
            task = kwargs.pop("task", "breast_cancer")
            target, drop = kwargs.pop("target", None), kwargs.pop("drop", None)
            if not isinstance(task, Task):
                task = get_task(task, target=target, drop=drop)
            kwargs["sandbox"], _ = resolve_sandbox_on_cluster(
                kwargs.get("sandbox", "auto"), self._num_cpus
            )
            _check_env(env_id, {"task": task, **kwargs})
            task_ref = ship_task(task)
        else:
            _check_env(env_id, kwargs)
        return kwargs, task_ref

    def _spawn(self) -> Any:
        options = {
            "num_cpus": self._num_cpus,
            "scheduling_strategy": self._strategy,
            "max_restarts": 0,  # a lost actor is replaced by this driver, with a fresh episode
            **self._ray_options,
        }
        return _RemoteEnvWorker.options(**options).remote(
            self.env_id, self._env_kwargs, self._task_ref
        )

    def _await(self, actors: Sequence[Any], what: str) -> list[dict[str, Any]]:
        """``describe()`` of each actor once it is placed and built; a clear error otherwise."""
        refs = [actor.describe.remote() for actor in actors]
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=self._start_timeout)
        if pending:
            waiting = set(pending)
            for actor, ref in zip(actors, refs):
                if ref in waiting:  # never placed: nothing to close, and `close` would wait for it
                    ray.kill(actor, no_restart=True)
            nodes = alive_nodes()
            cpus = sum(n.cpus for n in nodes)
            raise RayClusterError(
                f"{what}: {len(pending)} of {len(refs)} env actor(s) could not be placed within "
                f"{self._start_timeout:g} s; each needs {self._num_cpus:g} CPU, and the cluster "
                f"offers {cpus:g} CPU on {len(nodes)} node(s) (other work may hold some); add "
                "nodes, lower num_envs or num_cpus, or raise start_timeout",
                address=self._connection.address,
                needed_cpus=self._num_cpus * len(refs),
                cluster_cpus=cpus,
            )
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise RayClusterError(
                f"{what}: an env actor failed to start: {describe_failure(exc)}",
                address=self._connection.address,
            ) from exc

    def _replace(self, i: int) -> None:
        """A new actor for sub-env ``i`` (its old one was lost)."""
        old, self._actors[i] = self._actors[i], self._spawn()
        ray.kill(old, no_restart=True)
        described = self._await([self._actors[i]], f"replacing sub-env {i}")[0]
        self.workers[i] = WorkerInfo(described["node_id"], described["pid"])
        self.replaced += 1

    # -- Gymnasium vector API --------------------------------------------------------------------

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the sub-envs (``seed``: ``None``, ``s`` for ``s, s+1, ...``, or one per env;
        ``options["reset_mask"]`` resets only some)."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
            self._replacement_seeds = np.random.default_rng(int(seed))
        else:
            seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(
                f"If seeds are passed as a list the length must match num_envs={self.num_envs} "
                f"but got length={len(seeds)}."
            )
        options = dict(options) if options is not None else None
        mask = np.ones(self.num_envs, dtype=np.bool_)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) "
                    f"with at least one True value; got {mask!r}"
                )
        self._autoreset_envs[mask] = False
        todo = [i for i in range(self.num_envs) if mask[i]]
        refs = {i: self._actors[i].reset.remote(seeds[i], options) for i in todo}
        infos: dict[str, Any] = {}
        for i in todo:
            try:
                self._obs[i], info = ray.get(refs[i])
            except SYSTEM_ERRORS:
                self._replace(i)  # once: a reset that fails twice is the cluster's failure
                self._obs[i], info = ray.get(self._actors[i].reset.remote(seeds[i], options))
            infos = self._add_info(infos, info, i)
        return self._batch(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env at once (autoreset as configured)."""
        actions = list(iterate(self.action_space, actions))
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} sub-envs")
        mode = self.autoreset_mode
        if mode is AutoresetMode.DISABLED and self._autoreset_envs.any():
            ended = np.flatnonzero(self._autoreset_envs).tolist()
            raise gym.error.ResetNeeded(
                f"sub-env(s) {ended} ended their episode and autoreset_mode is disabled: reset "
                "them (options={'reset_mask': ...}) before stepping"
            )
        refs: list[Any] = []
        for i, action in enumerate(actions):
            actor = self._actors[i]
            if self._autoreset_envs[i] and mode is AutoresetMode.NEXT_STEP:
                refs.append(actor.reset.remote(None, None))
            elif mode is AutoresetMode.SAME_STEP:
                refs.append(actor.step_same.remote(action))
            else:
                refs.append(actor.step.remote(action))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for i, ref in enumerate(refs):
            resetting = self._autoreset_envs[i] and mode is AutoresetMode.NEXT_STEP
            try:
                out = ray.get(ref)
            except SYSTEM_ERRORS as exc:
                info = self._lost(i, exc)
                if resetting:  # nothing was lost but a reset: do it on the new actor
                    self._obs[i], info = ray.get(self._actors[i].reset.remote(None, None))
                    infos = self._add_info(infos, info, i)
                    continue
                truncations[i] = True
                if mode is AutoresetMode.SAME_STEP:
                    infos = self._add_info(
                        infos, {"final_obs": self._obs[i], "final_info": info}, i
                    )
                    seed = int(self._replacement_seeds.integers(2**31 - 1))
                    self._obs[i], info = ray.get(self._actors[i].reset.remote(seed, None))
                infos = self._add_info(infos, info, i)
                continue
            if resetting:
                self._obs[i], info = out
            else:
                self._obs[i], rewards[i], terminations[i], truncations[i], info, final = out
                if final is not None:
                    infos = self._add_info(
                        infos, {"final_obs": final[0], "final_info": final[1]}, i
                    )
            infos = self._add_info(infos, info, i)
        self._autoreset_envs = np.logical_or(terminations, truncations)
        return self._batch(), rewards, terminations, truncations, infos

    def _lost(self, i: int, exc: BaseException) -> dict[str, Any]:
        """Replace sub-env ``i``'s lost actor; the info of the step it lost."""
        lost_on = self.workers[i]
        self._replace(i)
        error = f"the Ray actor of sub-env {i} was lost ({describe_failure(exc)})"
        return {
            "status": "infra_error",
            "infra_error": True,
            "error": error,
            "score": None,
            "ray_node": lost_on.node_id,
        }

    def _batch(self) -> Any:
        out = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        return copy.deepcopy(concatenate(self.single_observation_space, self._obs, out))

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``name(*args, **kwargs)`` on every sub-env (its value, for an attribute)."""
        return tuple(ray.get([a.call.remote(name, args, kwargs) for a in self._actors]))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """An attribute of every sub-env."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set an attribute on every sub-env (one value, or one per sub-env)."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for {self.num_envs} sub-envs")
        ray.get([a.set_attr.remote(name, v) for a, v in zip(self._actors, values)])

    def render(self) -> tuple[Any, ...]:
        """Each sub-env's ``render()``."""
        return self.call("render")

    def close_extras(self, timeout: float = 60.0, **kwargs: Any) -> None:
        """Close every sub-env (its sandbox) on its node, then end the actors and, if this env
        connected to the cluster, disconnect."""
        actors, self._actors = getattr(self, "_actors", []), []
        try:
            if actors and ray.is_initialized():
                refs = [a.close.remote() for a in actors]
                ray.wait(refs, num_returns=len(refs), timeout=timeout)
                for actor in actors:
                    ray.kill(actor, no_restart=True)
        finally:
            connection = getattr(self, "_connection", None)
            if connection is not None:
                connection.close()

    def __del__(self) -> None:
        # Owners call close(); actors whose handles are gone end anyway (and their kernels die
        # with them). Never raise from a finaliser.
        try:
            if not getattr(self, "closed", True):
                self.close()
        except Exception:
            pass
