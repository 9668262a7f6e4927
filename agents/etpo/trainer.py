"""ETPO training through the Gymnasium vector-env loop, top to bottom.

One update: roll out ``env_steps_per_update`` vector-env steps with π (multi-step episodes: after
a failure the next observation is a reflection prompt), compute per-token soft Bellman targets
with the target critic Q̄, take ``critic_steps`` critic steps, ``actor_steps`` policy steps toward
``π ∝ ρ·exp(Q/β)``, and move Q̄ toward Q. Metrics go to ``metrics.jsonl`` (one record per
update), checkpoints to ``checkpoint/``; ``resume`` continues a killed run with nothing lost.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import etpo_gym
from etpo_gym.errors import ConfigError
from etpo_gym.prompts import action_to_code

from . import soft_bellman as sb
from .config import EtpoConfig
from .models import EtpoModels
from .optim import make_optimizer


@dataclass
class Transition:
    """One action: token ids of its prompt and of the action, and what followed."""

    prompt_ids: list[int]
    action_ids: list[int]
    reward: float
    next_prompt_ids: list[int]
    done: bool


def run_name(cfg: EtpoConfig) -> str:
    """CleanRL-style run name: ``task__etpo__seed__unixtime``."""
    task = Path(cfg.task).stem if cfg.task.endswith(".csv") else cfg.task
    return f"{task}__etpo__{cfg.seed}__{int(time.time())}"


def task_list(task: str) -> list[str]:
    """The tasks of a ``task`` setting: one name or path, or several joined by commas."""
    return [t.strip() for t in task.split(",") if t.strip()]


def env_config(cfg: EtpoConfig) -> EtpoConfig:
    """``cfg`` as :func:`make_envs` takes it: several tasks become one multi-task env id."""
    tasks = task_list(cfg.task)
    if len(tasks) < 2 or cfg.env_id.split(":")[-1] not in etpo_gym.ENV_IDS:
        return cfg
    from .multitask import ENV_ID

    kwargs: dict[str, Any] = dict(
        env_id=cfg.env_id.split(":")[-1],
        sandbox=cfg.sandbox,
        max_steps=cfg.max_episode_steps,
        timeout=cfg.step_timeout,
    )
    if cfg.target:
        kwargs["target"] = cfg.target
    if cfg.sandbox == "local":
        # Each task's env would keep a kernel pre-started for its next episode: with k tasks,
        # k spare kernels per env, most idle and those left at the end never used.
        kwargs["sandbox_kwargs"] = {"pool_size": 0}
    return dataclasses.replace(
        cfg, env_id=ENV_ID, extra_env_kwargs={"tasks": tasks, **kwargs, **cfg.extra_env_kwargs}
    )


def shape_reward(reward: float, baseline: float | None, rate: float) -> tuple[float, float]:
    """``(reward − baseline, next baseline)``: the baseline is an exponential moving average of
    rewards at ``rate`` that starts at the first reward (so that reward is shaped to 0); with
    ``rate = 0`` rewards pass unchanged. Subtracting it makes Q = 0 mean "an average action"."""
    if baseline is None:
        baseline = reward
    shaped = reward - baseline if rate else reward
    return shaped, baseline + rate * (reward - baseline)


def make_envs(cfg: EtpoConfig, num_envs: int | None = None) -> gym.vector.VectorEnv:
    """The vector env: async for the DataSci envs (each env steps in its own process, so the
    envs' kernels run side by side), sync for others (the in-process toy env); with ``cfg.ray``,
    Ray actors on a cluster."""
    kwargs: dict[str, Any] = dict(cfg.extra_env_kwargs)
    datasci = cfg.env_id.split(":")[-1] in etpo_gym.ENV_IDS
    if datasci:
        kwargs.update(
            task=cfg.task,
            sandbox=cfg.sandbox,
            max_steps=cfg.max_episode_steps,
            timeout=cfg.step_timeout,
        )
        if cfg.target:
            kwargs["target"] = cfg.target
    # SAME_STEP autoreset: an ended episode is reset within the step that ended it, so every
    # step of every env yields a transition (the final observation is in info["final_obs"]).
    if cfg.ray:  # the same vector API, with each env a Ray actor somewhere on the cluster
        from etpo_gym.distributed import RayVectorEnv

        return RayVectorEnv(
            cfg.env_id,
            num_envs or cfg.num_envs,
            address=cfg.ray,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
            **kwargs,
        )
    return gym.make_vec(
        cfg.env_id,
        num_envs=num_envs or cfg.num_envs,
        vectorization_mode="async" if datasci else "sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **kwargs,
    )


def collate(batch: list[Transition], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch: actions/mask (B, T), rewards/dones (B,), and the id lists."""
    width = max(len(t.action_ids) for t in batch)
    actions = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, t in enumerate(batch):
        actions[i, : len(t.action_ids)] = torch.tensor(t.action_ids)
        mask[i, : len(t.action_ids)] = True
    return {
        "prompts": [t.prompt_ids for t in batch],
        "actions_list": [t.action_ids for t in batch],
        "next_prompts": [t.next_prompt_ids for t in batch],
        "actions": actions.to(device),
        "mask": mask.to(device),
        "rewards": torch.tensor([t.reward for t in batch], dtype=torch.float32, device=device),
        "dones": torch.tensor([t.done for t in batch], dtype=torch.float32, device=device),
    }


def etpo_update(
    models: EtpoModels,
    batch: list[Transition],
    cfg: EtpoConfig,
    actor_opt: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer,
    scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler] | None = None,
) -> dict[str, float]:
    """One ETPO update on ``batch``; returns timings and losses.

    ``scalers`` (critic's, actor's) scale the losses for fp16 compute; ``None`` or disabled
    scalers leave them as they are.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    b = collate(batch, models.device)
    prompts, actions_list, actions, mask = b["prompts"], b["actions_list"], b["actions"], b["mask"]
    width = mask.shape[1]
    dueling = models.q_param == "dueling"
    critic_scaler, actor_scaler = scalers or (_off_scaler(), _off_scaler())

    # 1. targets from Q̄, π and ρ (no gradient)
    with torch.no_grad():
        q_bar, v_bar = models.action_outputs("q_target", prompts, actions_list)
        pi_old = models.action_logits("pi", prompts, actions_list)
        rho = models.action_logits("rho", prompts, actions_list)
        nq, nv = models.first_outputs("q_target", b["next_prompts"])
        npi, nrho = (models.first_logits(r, b["next_prompts"])[:, None] for r in ("pi", "rho"))
        if dueling:
            assert v_bar is not None and nv is not None
            next_values = sb.dueling_soft_values(
                q_bar[:, 1:], v_bar[:, 1:], pi_old[:, 1:], cfg.beta
            )
            next_obs_values = sb.dueling_soft_values(nq[:, None], nv[:, None], npi, cfg.beta)[:, 0]
        else:
            next_values = sb.soft_values(q_bar[:, 1:], pi_old[:, 1:], rho[:, 1:], cfg.beta)
            next_obs_values = sb.soft_values(nq[:, None], npi, nrho, cfg.beta)[:, 0]
        next_path_kl = None
        if cfg.td_lambda > 0:
            log_ratio = sb.taken_log_probs(pi_old[:, :width], actions, mask) - sb.taken_log_probs(
                rho[:, :width], actions, mask
            )
            next_path_kl = cfg.beta * torch.nn.functional.pad(log_ratio[:, 1:], (0, 1))
        targets = sb.soft_bellman_targets(
            next_values,
            next_obs_values,
            b["rewards"],
            b["dones"],
            mask,
            cfg.gamma,
            td_lambda=cfg.td_lambda,
            next_path_kl=next_path_kl,
        )
        del q_bar, nq, npi, nrho
    timings["time/targets"] = time.perf_counter() - clock

    # 2. critic steps on the taken tokens
    clock = time.perf_counter()
    for _ in range(cfg.critic_steps):
        q, v = models.action_outputs("q", prompts, actions_list, grad=True)
        if dueling:
            assert v is not None
            q_taken = sb.dueling_q_taken(
                q[:, :width], v[:, :width], rho[:, :width], actions, mask, cfg.beta
            )
            loss_q = sb.critic_loss_taken(q_taken, targets, mask, kind=cfg.critic_loss)
        else:
            loss_q = sb.critic_loss(q[:, :width], actions, targets, mask, kind=cfg.critic_loss)
        _step(critic_opt, critic_scaler, loss_q, models.critic_parameters(), cfg.grad_clip)
    timings["time/critic"] = time.perf_counter() - clock

    # 3. policy step toward π* ∝ ρ·exp(Q/β); the no-grad Q forward comes first (with LoRA, an
    #    adapter switch after π's forward would cut π's gradient)
    clock = time.perf_counter()
    with torch.no_grad():
        q_now, v_now = models.action_outputs("q", prompts, actions_list)
        q_now = q_now[:, :width]
    for _ in range(cfg.actor_steps):
        pi = models.action_logits("pi", prompts, actions_list, grad=True)[:, :width]
        if dueling:
            loss_pi = sb.dueling_policy_loss(pi, q_now, mask, cfg.beta)
        else:
            loss_pi = sb.policy_loss(pi, rho[:, :width], q_now, mask, cfg.beta)
        _step(actor_opt, actor_scaler, loss_pi, models.policy_parameters(), cfg.grad_clip)
    timings["time/actor"] = time.perf_counter() - clock

    # 4. target critic
    models.polyak(cfg.polyak)
    with torch.no_grad():
        kl = sb.masked_mean(sb.kl_divergence(pi_old[:, :width], rho[:, :width]), mask)
        ent = sb.masked_mean(sb.entropy(pi_old[:, :width]), mask)
        last = sb.last_token_mask(mask)
        if dueling:
            assert v_now is not None
            q_all = sb.dueling_q_taken(
                q_now, v_now[:, :width], rho[:, :width], actions, mask, cfg.beta
            )
            star_kl = sb.kl_divergence(q_now, rho[:, :width])  # π* = π_Q
        else:
            q_all = q_now.gather(-1, actions.unsqueeze(-1)).squeeze(-1).float()
            star_kl = sb.soft_greedy_kl(q_now, rho[:, :width], cfg.beta)
    return {
        "losses/critic": loss_q.item(),
        "losses/policy": loss_pi.item(),
        "stats/kl": float(kl),
        "stats/soft_greedy_kl": float(sb.masked_mean(star_kl, mask)),
        "stats/entropy": float(ent),
        "stats/q_last_token": float(q_all[last].mean()),
        "stats/target_mean": float(sb.masked_mean(targets, mask)),
        "stats/action_tokens": float(mask.sum(1).float().mean()),
        **timings,
    }


def _off_scaler() -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", enabled=False)


def _step(
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    params: list[torch.nn.Parameter],
    clip: float,
) -> None:
    """Backward, clip the true (unscaled) gradient norm, step; a scaler that finds inf/NaN
    gradients skips the step and lowers its scale."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(opt)
    scaler.update()


@dataclass
class StepOutcome:
    """What one env of a vector-env step returned, as the learner needs it."""

    reward: float
    done: bool
    """terminated: the target gets no bootstrap (a truncated episode is not done: it bootstraps)"""
    ended: bool
    """terminated or truncated: the episode is over (the env was reset within the step)"""
    last_obs: str
    """the observation after the action (for an ended episode, its final one)"""
    status: str
    task: str
    infra_error: bool


def step_outcomes(
    next_obs: Any, rewards: Any, terminated: Any, truncated: Any, infos: dict[str, Any], task: str
) -> list[StepOutcome]:
    """Per env, the outcome of a same-step-autoreset vector-env step."""
    out = []
    for i in range(len(rewards)):
        ended = bool(terminated[i] or truncated[i])
        # for an ended episode, the step's own info and last observation are kept aside by the
        # vector env (next_obs[i] is already the next episode's first)
        step_info = infos["final_info"] if ended else infos
        out.append(
            StepOutcome(
                reward=float(rewards[i]),
                done=bool(terminated[i]),
                ended=ended,
                last_obs=str(infos["final_obs"][i] if ended else next_obs[i]),
                status=str(_info_at(step_info, "status", i, "ok")),
                task=str(_info_at(step_info, "task", i, task)),
                infra_error=bool(_info_at(step_info, "infra_error", i, False)),
            )
        )
    return out


def _info_at(infos: dict[str, Any], key: str, i: int, default: Any = None) -> Any:
    if key in infos and infos.get(f"_{key}", np.ones(i + 1, bool))[i]:
        return infos[key][i]
    return default


def train(
    cfg: EtpoConfig, resume: str | os.PathLike[str] | None = None, progress: bool = True
) -> Path:
    """Train; returns the run directory (metrics.jsonl, curve.png, best/, checkpoint/).

    With ``resume=DIR``, ``cfg`` should be the run's saved config (``EtpoConfig.from_json``),
    possibly with more ``steps``: the run continues from its last checkpoint.
    """
    from tqdm.auto import tqdm

    # -- run directory, config, resume state ---------------------------------------------------
    if resume is not None:
        out = Path(resume)
        if not (out / "config.json").is_file():
            raise ConfigError(f"--resume {out}: not a run directory (no config.json)")
        cfg = dataclasses.replace(cfg, out=str(out))
    else:
        out = Path(cfg.out or Path("runs") / run_name(cfg))
        if (out / "config.json").exists():
            raise ConfigError(f"--out {out} already holds a run; use --resume {out} to continue it")
        out.mkdir(parents=True, exist_ok=True)
        cfg = dataclasses.replace(cfg, out=str(out))
    (out / "config.json").write_text(cfg.to_json())
    (out / "best").mkdir(exist_ok=True)

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    models = EtpoModels(
        cfg.model,
        mode=cfg.mode,
        device=cfg.device,
        dtype=cfg.dtype,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        q_param=cfg.q_param,
        seed=cfg.seed,
    )
    actor_opt = make_optimizer(
        models.policy_parameters(), cfg.optimizer, cfg.actor_lr, eps=cfg.actor_eps
    )
    critic_opt = make_optimizer(models.critic_parameters(), cfg.optimizer, cfg.critic_lr)
    # fp16 gradients underflow without loss scaling; bf16 and float32 need none
    scalers = tuple(
        torch.amp.GradScaler(models.device.type, enabled=cfg.dtype == "float16") for _ in "ca"
    )
    state = {"update": 0, "baseline": None, "best": {}, "env_steps": 0, "episodes": 0}
    ckpt = out / "checkpoint"
    if resume is not None and (ckpt / "trainer.pt").is_file():
        models.load(ckpt)
        saved_state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
        actor_opt.load_state_dict(saved_state["actor_opt"])
        critic_opt.load_state_dict(saved_state["critic_opt"])
        for scaler, saved in zip(scalers, saved_state.get("scalers", ())):
            scaler.load_state_dict(saved)
        state = saved_state["state"]
        torch.set_rng_state(saved_state["torch_rng"])
    _truncate_metrics(out / "metrics.jsonl", state["update"])

    # -- rollout + learning loop ---------------------------------------------------------------
    envs = make_envs(env_config(cfg))
    try:
        n = cfg.num_envs
        first_seed = cfg.seed * 100_003 + state["update"] * n
        obs, reset_infos = envs.reset(seed=[first_seed + i for i in range(n)])
        _write_sandboxes(out / "sandbox.json", cfg.sandbox, reset_infos)
        returns = np.zeros(n)
        bar = tqdm(
            total=cfg.steps,
            initial=state["update"],
            desc="etpo",
            unit="update",
            disable=not progress,
        )
        for update in range(state["update"], cfg.steps):
            started = time.perf_counter()
            batch: list[Transition] = []
            finished_returns: list[float] = []
            statuses: list[str] = []
            raw_rewards: list[float] = []
            generate_s = env_s = 0.0
            for k in range(cfg.env_steps_per_update):
                clock = time.perf_counter()
                samples = models.generate(
                    list(obs),
                    temperature=cfg.temperature,
                    top_k=cfg.top_k,
                    max_new_tokens=cfg.max_new_tokens,
                    seed=cfg.seed * 1_000_003 + update * 101 + k,
                )
                generate_s += time.perf_counter() - clock
                clock = time.perf_counter()
                next_obs, rewards, terminated, truncated, infos = envs.step([s[2] for s in samples])
                env_s += time.perf_counter() - clock
                state["env_steps"] += n
                outcomes = step_outcomes(next_obs, rewards, terminated, truncated, infos, cfg.task)
                for i, ((prompt_ids, action_ids, code), o) in enumerate(zip(samples, outcomes)):
                    if o.infra_error:
                        continue  # the sandbox failed, not the agent: never learned from
                    raw_rewards.append(o.reward)
                    statuses.append(o.status)
                    returns[i] += o.reward
                    shaped, state["baseline"] = shape_reward(
                        0.0 if cfg.zero_rewards else o.reward,
                        state["baseline"],
                        cfg.reward_baseline,
                    )
                    batch.append(
                        Transition(
                            prompt_ids,
                            action_ids or [models.tokenizer.eos_token_id],
                            shaped,
                            models.encode(o.last_obs),
                            o.done,
                        )
                    )
                    best = state["best"].get(o.task)
                    if o.status == "ok" and (best is None or o.reward > best["reward"]):
                        state["best"][o.task] = {"reward": o.reward, "code": code, "update": update}
                        _write_best(out / "best", o.task, state["best"][o.task])
                    if o.ended:
                        finished_returns.append(float(returns[i]))
                        returns[i] = 0.0
                        state["episodes"] += 1
                obs = next_obs

            metrics: dict[str, Any] = {"update": update + 1, "global_step": state["env_steps"]}
            if batch:
                metrics.update(etpo_update(models, batch, cfg, actor_opt, critic_opt, scalers))
            ok = [s == "ok" for s in statuses]
            metrics.update(
                {
                    "charts/valid_rate": float(np.mean(ok)) if ok else None,
                    "charts/mean_reward": float(np.mean(raw_rewards)) if raw_rewards else None,
                    "charts/episodic_return": float(np.mean(finished_returns))
                    if finished_returns
                    else None,
                    "charts/episodes": state["episodes"],
                    "charts/best_reward": max(
                        (v["reward"] for v in state["best"].values()), default=None
                    ),
                    "stats/reward_baseline": state["baseline"],
                    "time/generate": generate_s,
                    "time/env": env_s,
                    "time/update": time.perf_counter() - started,
                }
            )
            _append_jsonl(out / "metrics.jsonl", metrics)
            state["update"] = update + 1
            if state["update"] % cfg.checkpoint_every == 0 or state["update"] == cfg.steps:
                _save_checkpoint(ckpt, models, actor_opt, critic_opt, state, scalers)
            bar.set_postfix(
                valid=f"{metrics['charts/valid_rate'] or 0:.2f}",
                kl=f"{metrics.get('stats/kl', 0):.3f}",
            )
            bar.update(1)
        bar.close()
    finally:
        envs.close()
    plot_curve(out / "metrics.jsonl", out / "curve.png")
    if cfg.eval_episodes:
        results = {
            task: evaluate(out, task, cfg.eval_episodes, seed=10_000 + cfg.seed, cfg=cfg)
            for task in task_list(cfg.task)
        }
        (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    return out


def _write_best(directory: Path, task: str, best: dict[str, Any]) -> None:
    name = Path(task).stem if task.endswith(".csv") else task
    header = f"# best code for {task}: reward {best['reward']:.4f} (update {best['update']})\n"
    tmp = directory / f".{name}.py.tmp"
    tmp.write_text(header + action_to_code(best["code"]) + "\n")
    tmp.replace(directory / f"{name}.py")


def _write_sandboxes(path: Path, requested: str, infos: dict[str, Any]) -> None:
    """What the envs really run in, as their reset infos say: ``config.json`` keeps what was
    asked (``auto`` is decided per env, on a Ray cluster per worker)."""
    used = set()
    if "sandbox" in infos:
        mask = infos.get("_sandbox", [True] * len(infos["sandbox"]))
        for present, sandbox, isolation in zip(
            mask, infos["sandbox"], infos.get("isolation", [None] * len(mask))
        ):
            if present:
                used.add((str(sandbox), str(isolation)))
    record = {
        "requested": requested,
        "used": [{"sandbox": s, "isolation": i} for s, i in sorted(used)],
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_metrics(path: Path, upto: int) -> None:
    """Keep the records of updates ≤ ``upto`` (those the checkpoint covers) and drop the rest."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if record.get("update", 0) <= upto:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def _save_checkpoint(
    ckpt: Path,
    models: EtpoModels,
    actor_opt: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer,
    state: dict[str, Any],
    scalers: tuple[torch.amp.GradScaler, ...] = (),
) -> None:
    """Write the checkpoint into a fresh directory, then swap it in (a kill leaves the old one)."""
    import shutil

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    models.save(tmp)
    torch.save(
        {
            "actor_opt": actor_opt.state_dict(),
            "critic_opt": critic_opt.state_dict(),
            "scalers": [scaler.state_dict() for scaler in scalers],
            "state": state,
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "trainer.pt",
    )
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.replace(old)
    tmp.replace(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def plot_curve(metrics_path: Path, png: Path) -> None:
    """Learning curve: mean reward, valid rate and KL(π‖ρ) per update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics_path.exists():
        return
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not records:
        return
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("charts/episodic_return", "charts/valid_rate", "stats/kl")):
        points = [(r["update"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker=".", linewidth=1)
        ax.set_title(key)
        ax.set_xlabel("update")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def evaluate(
    run_or_checkpoint: str | os.PathLike[str],
    task: str,
    episodes: int,
    seed: int = 10_000,
    cfg: EtpoConfig | None = None,
    device: str = "cpu",
    temperature: float | None = None,
) -> dict[str, Any]:
    """Score π (``DIR/checkpoint/policy`` or ``DIR/policy`` or a HF dir) on ``episodes`` fresh
    episodes drawn from ``seed``: one attempt each (the policy's one-shot reward; −1 on error).
    ``temperature`` (0: greedy) overrides ``cfg``'s."""
    from .agent import EtpoAgent

    if temperature is None:
        temperature = cfg.temperature if cfg else 0.8
    if temperature < 0:
        raise ConfigError(f"temperature={temperature!r} must be >= 0 (0: greedy)")
    agent = EtpoAgent.from_checkpoint(
        run_or_checkpoint,
        device=device,
        temperature=temperature,
        max_new_tokens=cfg.max_new_tokens if cfg else 160,
        seed=seed,
    )
    base = cfg or EtpoConfig(task=task)
    base = dataclasses.replace(base, task=task, max_episode_steps=1)
    kwargs: dict[str, Any] = dict(base.extra_env_kwargs)
    if base.env_id.split(":")[-1] in etpo_gym.ENV_IDS:
        kwargs.update(task=task, sandbox=base.sandbox, max_steps=1, timeout=base.step_timeout)
    env = gym.make(base.env_id, **kwargs)
    rewards, valid = [], []
    try:
        # the first reset fixes the seed; later resets draw the next episode seeds from it, so
        # the sandbox can pre-start each episode's kernel (fresh per episode, warm when needed)
        observation, _ = env.reset(seed=seed)
        agent.reset(task=task, seed=seed)
        for episode in range(episodes):
            if episode:
                observation, _ = env.reset()
            code = agent.act(observation, {})
            _, reward, _, _, info = env.step(code)
            if info.get("infra_error"):
                continue
            rewards.append(float(reward))
            valid.append(info.get("status") == "ok")
    finally:
        env.close()
    arr = np.asarray(rewards)
    sem = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return {
        "task": task,
        "episodes": len(arr),
        "mean_reward": float(arr.mean()) if len(arr) else float("nan"),
        "sem": sem,
        "valid_rate": float(np.mean(valid)) if valid else float("nan"),
        "seed": seed,
    }
