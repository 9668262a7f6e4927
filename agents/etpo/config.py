"""Settings of an ETPO run: one dataclass, validated once, saved with the run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError

from .models import DTYPES, MODES, Q_PARAMS
from .optim import OPTIMIZERS


@dataclass
class EtpoConfig:
    """ETPO hyperparameters and run settings (defaults: the public code's, scaled for a CPU)."""

    task: str = "skill_interactions"
    """task name (``etpo-gym tasks``), several joined by commas (one drawn per episode), or a CSV
    path (then set ``target``)"""
    target: str | None = None
    """target column of a CSV task"""
    env_id: str = "DataSci-v0"
    """registered env id"""
    sandbox: str = "auto"
    """sandbox backend: auto (Docker when usable, else local; the run records which), local or
    docker"""
    model: str = "starter"
    """a local Hugging Face causal-LM directory, or ``starter`` (the shipped CPU policy)"""
    mode: str = "full"
    """``full``: π, Q, Q̄, ρ as full copies (the paper); ``lora``: one frozen base with adapters"""
    q_param: str = "head"
    """how the critic is read as Q: ``head`` (a vocabulary head on the critic's last hidden state,
    zero at the start: π* = ρ, Q in reward units), ``dueling`` (Q = V + β·log(π_Q/ρ), V a value
    head starting at 0) or ``paper`` (the critic LM's logits are Q)"""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1 …"""
    dtype: str = "float32"
    """compute precision: float32, bfloat16, float16 (trainable weights stay float32)"""
    seed: int = 0
    """seeds torch, the samples and the env episodes"""
    steps: int = 30
    """updates (one update = ``env_steps_per_update`` vector-env steps, then learning)"""
    num_envs: int = 4
    """parallel envs (each its own sandbox)"""
    env_steps_per_update: int = 2
    """vector-env steps collected per update (public code: 2)"""
    max_episode_steps: int = 3
    """env ``max_steps``: attempts per episode, with reflection prompts after failures"""
    step_timeout: float = 30.0
    """seconds per executed action"""
    beta: float = 0.1
    """entropy (KL to ρ) coefficient β (the paper: 0.01)"""
    gamma: float = 0.99
    """discount between actions (none between tokens of one action)"""
    td_lambda: float = 1.0
    """λ of the per-token λ-return targets inside an action: 0 is the paper's one-step soft
    Bellman target, 1 the sampled soft return (reaches every token in one update)"""
    polyak: float = 0.9
    """target critic ← polyak·target + (1 − polyak)·critic after each update (paper: 0.995 over
    many more updates; a short CPU run needs a faster target)"""
    actor_lr: float = 3e-4
    """policy learning rate"""
    critic_lr: float = 3e-4
    """critic learning rate"""
    optimizer: str = "adamw"
    """adamw or lion (the public code's)"""
    actor_eps: float = 1e-5
    """AdamW eps of the policy: π = ρ at the start gives near-zero gradients that 1e-8 blows up"""
    critic_steps: int = 4
    """critic gradient steps per batch"""
    actor_steps: int = 4
    """policy gradient steps per batch (toward π* of the critic after its steps)"""
    grad_clip: float = 10.0
    """global gradient-norm clip"""
    critic_loss: str = "huber"
    """huber or mse"""
    reward_baseline: float = 0.1
    """rewards minus a running mean (this EMA rate) so that Q = 0 means "average"; 0 disables"""
    zero_rewards: bool = False
    """learn from reward 0 on every step (a control: the same updates without the signal)"""
    temperature: float = 0.8
    """sampling temperature"""
    top_k: int = 50
    """sampling top-k"""
    max_new_tokens: int = 160
    """longest action, in tokens"""
    lora_r: int = 16
    """LoRA rank (mode lora)"""
    lora_alpha: int = 32
    """LoRA alpha (mode lora)"""
    checkpoint_every: int = 10
    """updates between checkpoints (and at the end)"""
    eval_episodes: int = 0
    """episodes scored on fresh seeds at the end (0: skip)"""
    out: str = ""
    """run directory (default: runs/<task>__etpo__<seed>__<time>)"""
    extra_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """more ``gym.make`` keywords"""

    def __post_init__(self) -> None:
        choices = {
            "mode": MODES,
            "q_param": Q_PARAMS,
            "dtype": tuple(DTYPES),
            "optimizer": OPTIMIZERS,
            "critic_loss": ("huber", "mse"),
            "sandbox": ("local", "docker", "auto"),
        }
        for name, accepted in choices.items():
            value = getattr(self, name)
            if value not in accepted:
                raise ConfigError(
                    f"EtpoConfig.{name}={value!r} is not accepted; choose one of {', '.join(accepted)}"
                )
        positive_ints = (
            "steps",
            "num_envs",
            "env_steps_per_update",
            "max_episode_steps",
            "critic_steps",
            "actor_steps",
            "top_k",
            "max_new_tokens",
            "lora_r",
            "lora_alpha",
            "checkpoint_every",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"EtpoConfig.{name}={value!r} must be an integer >= 1")
        for name in ("beta", "actor_lr", "critic_lr", "actor_eps", "grad_clip", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"EtpoConfig.{name}={value!r} must be a number > 0")
        for name in ("gamma", "polyak", "reward_baseline", "td_lambda"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"EtpoConfig.{name}={value!r} must be in [0, 1]")
        if not isinstance(self.zero_rewards, bool):
            raise ConfigError(
                f"EtpoConfig.zero_rewards={self.zero_rewards!r} must be True or False"
            )
        if self.step_timeout <= 0:
            raise ConfigError(f"EtpoConfig.step_timeout={self.step_timeout!r} must be > 0")
        if not isinstance(self.eval_episodes, int) or self.eval_episodes < 0:
            raise ConfigError(f"EtpoConfig.eval_episodes={self.eval_episodes!r} must be >= 0")
        if not self.device or str(self.device).split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ConfigError(
                f"EtpoConfig.device={self.device!r} is not accepted; use cpu, cuda, cuda:N or mps"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, path: str | Path) -> EtpoConfig:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown EtpoConfig fields {unknown}")
        return cls(**data)


def field_docs() -> dict[str, str]:
    """The docstring under each :class:`EtpoConfig` field (for ``--help`` and the docs)."""
    import ast
    import inspect
    import itertools
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(EtpoConfig)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
