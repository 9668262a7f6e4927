"""GRPO baseline: TRL's ``GRPOTrainer`` on DataSci tasks, one attempt per episode.

The baseline a user of TRL would reach for, set up to compare with ETPO at equal environment
steps: the same starting policy, the same tasks (one drawn per episode, as ETPO's multi-task env
does), one env step per sampled body (every completion is scored in a fresh one-step episode of
its task), the same sampling settings. Each GRPO step samples ``num_generations`` bodies for one
task's prompt, scores them, and takes one policy-gradient step with group-normalised advantages;
``env_steps / num_generations`` steps in all. An infra error gives ``None`` (TRL: no reward).

Needs the ``trl`` extra (``pip install etpo-gym[trl]``). ``π`` is saved to ``OUT/policy`` as a
Hugging Face directory, which :class:`etpo_agents.etpo.agent.EtpoAgent` and ``etpo:OUT`` load.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError


@dataclass
class GrpoConfig:
    """Settings of a GRPO baseline run (sampling defaults: ETPO's)."""

    task: str = "skill_interactions"
    """task name, or several joined by commas (one drawn per GRPO step)"""
    model: str = "starter"
    """a local Hugging Face causal-LM directory, or ``starter``"""
    seed: int = 0
    """seeds torch, the task draws and the env episodes"""
    env_steps: int = 128
    """env steps (= scored bodies = one-step episodes) in all"""
    num_generations: int = 8
    """bodies per prompt (the group whose rewards are normalised together)"""
    learning_rate: float = 1e-4
    """AdamW learning rate"""
    beta: float = 0.0
    """KL(π‖ρ) coefficient (TRL's default 0: no reference model)"""
    num_iterations: int = 1
    """policy steps per generated batch (μ; above 1 the PPO clip matters)"""
    temperature: float = 0.8
    """sampling temperature"""
    top_k: int = 50
    """sampling top-k"""
    max_new_tokens: int = 160
    """longest body, in tokens"""
    sandbox: str = "local"
    """sandbox backend"""
    step_timeout: float = 30.0
    """seconds per executed body"""
    out: str = ""
    """run directory (default: runs/<task>__grpo__<seed>__<time>)"""

    def __post_init__(self) -> None:
        for name in ("env_steps", "num_generations", "num_iterations", "top_k", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"GrpoConfig.{name}={value!r} must be an integer >= 1")
        if self.num_generations < 2:
            raise ConfigError(
                f"GrpoConfig.num_generations={self.num_generations!r}: a group needs >= 2 bodies"
            )
        if self.env_steps % self.num_generations:
            raise ConfigError(
                f"GrpoConfig.env_steps={self.env_steps!r} must be a multiple of "
                f"num_generations={self.num_generations!r}"
            )
        for name in ("learning_rate", "temperature", "step_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"GrpoConfig.{name}={value!r} must be a number > 0")
        if not self.beta >= 0:
            raise ConfigError(f"GrpoConfig.beta={self.beta!r} must be >= 0")


class EpisodeRewards:
    """TRL reward function: each body is scored in a fresh one-step episode of its task.

    Each task's env draws its episode seeds from its own chain started at ``seed``, so its
    sandbox pre-starts the next kernel while the current one runs.
    """

    __name__ = "datasci_episode"  # TRL names reward functions by __name__ in its logs

    def __init__(self, tasks: list[str], seed: int, sandbox: str, timeout: float) -> None:
        import gymnasium as gym

        import etpo_gym  # noqa: F401 - registers DataSci-v0

        self.seed = seed
        self.envs = {
            t: gym.make("DataSci-v0", task=t, sandbox=sandbox, max_steps=1, timeout=timeout)
            for t in tasks
        }
        self._started: set[str] = set()
        self.env_steps = 0
        self.log: list[dict[str, Any]] = []

    def prompt(self, task: str) -> str:
        """The task's first observation (the prompt GRPO samples for)."""
        env = self.envs[task]
        if task not in self._started:
            self._started.add(task)
            return env.reset(seed=self.seed * 100_003 + sorted(self.envs).index(task))[0]
        return env.reset()[0]

    def __call__(self, prompts: list[str], completions: list[str], task: list[str], **_: Any):
        rewards: list[float | None] = []
        for prompt, body, name in zip(prompts, completions, task):
            observation = self.prompt(name)
            if observation != prompt:
                raise ConfigError(f"{name}: the env's prompt changed between episodes")
            _, reward, _, _, info = self.envs[name].step(body)
            self.env_steps += 1
            infra = bool(info.get("infra_error"))
            rewards.append(None if infra else float(reward))
            self.log.append({"task": name, "reward": rewards[-1], "status": info.get("status")})
        return rewards

    def close(self) -> None:
        envs, self.envs = self.envs, {}
        for env in envs.values():
            env.close()


def train_grpo(cfg: GrpoConfig, progress: bool = False) -> Path:
    """Train with TRL's GRPOTrainer; returns the run directory (``policy/``, ``metrics.jsonl``,
    ``config.json``)."""
    import random

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig as TrlConfig
    from trl import GRPOTrainer

    from .etpo.models import resolve_model_path
    from .etpo.trainer import task_list

    hf_logging.disable_progress_bar()
    tasks = task_list(cfg.task)
    out = Path(cfg.out or Path("runs") / f"{tasks[0]}__grpo__{cfg.seed}__{int(time.time())}")
    if (out / "config.json").exists():
        raise ConfigError(f"out={str(out)!r} already holds a run")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    path = resolve_model_path(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rewards = EpisodeRewards(tasks, cfg.seed, cfg.sandbox, cfg.step_timeout)
    try:
        steps = cfg.env_steps // cfg.num_generations
        rng = np.random.default_rng(cfg.seed)
        drawn = [tasks[int(i)] for i in rng.integers(len(tasks), size=steps)]
        prompts = {t: rewards.prompt(t) for t in tasks}
        rewards._started.clear()  # the first scored episode starts each task's seed chain
        dataset = Dataset.from_dict({"prompt": [prompts[t] for t in drawn], "task": drawn})
        args = TrlConfig(
            output_dir=str(out / "trl"),
            seed=cfg.seed,
            max_steps=steps,
            per_device_train_batch_size=cfg.num_generations,
            gradient_accumulation_steps=1,
            num_generations=cfg.num_generations,
            num_iterations=cfg.num_iterations,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            beta=cfg.beta,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            max_completion_length=cfg.max_new_tokens,
            shuffle_dataset=False,  # the drawn task order is the run's
            # generation in train mode with checkpointing writes garbage; the model is tiny
            gradient_checkpointing=False,
            disable_dropout=True,
            bf16=False,
            use_cpu=not torch.cuda.is_available(),
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
        )
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=rewards,
            args=args,
            train_dataset=dataset,
        )
        trainer.train()
        trainer.model.save_pretrained(out / "policy", safe_serialization=True)
        tokenizer.save_pretrained(out / "policy")
        with open(out / "metrics.jsonl", "w") as fh:
            for record in trainer.state.log_history:
                fh.write(json.dumps(record) + "\n")
        (out / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rewards.log))
        if rewards.env_steps != cfg.env_steps:
            raise ConfigError(
                f"GRPO took {rewards.env_steps} env steps, not the {cfg.env_steps} asked for"
            )
    finally:
        rewards.close()
    return out
