"""The ETPO math: per-token soft Bellman targets, the critic and policy losses, polyak averaging.

Pure tensor functions: no model, no env. Shapes: ``B`` transitions, ``T`` action tokens (padded,
left-aligned: ``mask[b, :n_b]`` is true), ``V`` vocabulary.

Logit alignment used throughout: a model's *action logits* ``L`` have shape ``(B, T + 1, V)``,
``L[:, j]`` being the logits after the prompt and the first ``j`` action tokens, i.e. the
distribution over action token ``j``; ``L[:, T]`` follows the last (padded) token.

The method (arXiv 2402.06700), with the critic ``Q`` read from a language model's logits:

* inside an action, token ``j`` (not the last) has target
  ``y_j = Σ_w π(w | s, w_≤j) Q̄(s, w_≤j, w) − β·KL(π‖ρ)(s, w_≤j)``: no reward, no discount;
* the last token of action ``a_t`` has target ``r_t + γ·V(s_{t+1})·(1 − done_t)`` with
  ``V(s) = Σ_w π(w|s) Q̄(s, w) − β·KL(π‖ρ)(s)`` at the first action position of ``s``;
* the policy moves toward the soft-greedy ``π* ∝ ρ·exp(Q/β)`` by minimising, per position,
  ``Σ_w π(w)[β(log π(w) − log ρ(w)) − Q(w)] = β·KL(π‖ρ) − E_π[Q]``.

The public reference code instead minimises the uniform vocabulary mean of
``β·log π − Q.detach()`` (:func:`public_actor_loss`), whose gradient does not depend on ``Q`` at
all: it only sharpens π. The tests keep that function to show that it fails where
:func:`policy_loss` succeeds.

Softmaxes are computed in float32, in chunks of positions, so bf16/fp16 logits never get a full
``(B, T, V)`` float32 copy beside them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

__all__ = [
    "critic_loss",
    "entropy",
    "kl_divergence",
    "last_token_mask",
    "masked_mean",
    "policy_loss",
    "polyak_update",
    "public_actor_loss",
    "soft_bellman_targets",
    "soft_values",
]

CHUNK = 64


def _chunks(length: int, chunk_size: int) -> Iterable[slice]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be >= 1")
    for start in range(0, length, chunk_size):
        yield slice(start, min(start + chunk_size, length))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T) over the true entries of ``mask`` (B, T); 0 when none is true."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, true at the last true entry of each row of ``mask`` (left-aligned)."""
    mask = mask.bool()
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (positions[None, :] == (lengths - 1)[:, None]) & mask


@torch.no_grad()
def kl_divergence(
    pi_logits: torch.Tensor, rho_logits: torch.Tensor, chunk_size: int = CHUNK
) -> torch.Tensor:
    """KL(π‖ρ) per position: (B, T, V), (B, T, V) → (B, T) float32."""
    out = torch.empty(pi_logits.shape[:2], dtype=torch.float32, device=pi_logits.device)
    for part in _chunks(pi_logits.shape[1], chunk_size):
        log_pi = F.log_softmax(pi_logits[:, part].float(), dim=-1)
        log_rho = F.log_softmax(rho_logits[:, part].float(), dim=-1)
        out[:, part] = (log_pi.exp() * (log_pi - log_rho)).sum(-1)
    return out


@torch.no_grad()
def entropy(pi_logits: torch.Tensor, chunk_size: int = CHUNK) -> torch.Tensor:
    """Entropy of π per position: (B, T, V) → (B, T) float32."""
    out = torch.empty(pi_logits.shape[:2], dtype=torch.float32, device=pi_logits.device)
    for part in _chunks(pi_logits.shape[1], chunk_size):
        log_pi = F.log_softmax(pi_logits[:, part].float(), dim=-1)
        out[:, part] = -(log_pi.exp() * log_pi).sum(-1)
    return out


@torch.no_grad()
def soft_values(
    q_logits: torch.Tensor,
    pi_logits: torch.Tensor,
    rho_logits: torch.Tensor,
    beta: float,
    chunk_size: int = CHUNK,
) -> torch.Tensor:
    """Soft value ``Σ_w π(w) Q(w) − β·KL(π‖ρ)`` per position: three (B, T, V) → (B, T) float32.

    Callers pass the target critic's logits as ``q_logits``. No gradient.
    """
    out = torch.empty(pi_logits.shape[:2], dtype=torch.float32, device=pi_logits.device)
    for part in _chunks(pi_logits.shape[1], chunk_size):
        log_pi = F.log_softmax(pi_logits[:, part].float(), dim=-1)
        log_rho = F.log_softmax(rho_logits[:, part].float(), dim=-1)
        pi = log_pi.exp()
        expected_q = (pi * q_logits[:, part].float()).sum(-1)
        kl = (pi * (log_pi - log_rho)).sum(-1)
        out[:, part] = expected_q - beta * kl
    return out


@torch.no_grad()
def soft_bellman_targets(
    next_values: torch.Tensor,
    next_obs_values: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Per-token soft Bellman targets (B, T), zero where ``mask`` is false; detached.

    Args:
        next_values: (B, T); entry ``j`` is the soft value at the position after token ``j``
            (``soft_values(Lq̄[:, 1:], Lπ[:, 1:], Lρ[:, 1:], β)``).
        next_obs_values: (B,) soft value of the next observation at its first action position.
        rewards: (B,) reward of the action.
        dones: (B,) true where the episode ended (terminated; not truncated).
        mask: (B, T) bool, true on real action tokens (left-aligned).
        gamma: discount between actions (none inside an action).
    """
    mask = mask.bool()
    last = last_token_mask(mask)
    bootstrap = rewards.float() + gamma * (1.0 - dones.float()) * next_obs_values.float()
    targets = torch.where(last, bootstrap[:, None], next_values.float())
    return targets * mask


def critic_loss(
    q_logits: torch.Tensor,
    actions: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "huber",
) -> torch.Tensor:
    """Masked mean loss between ``Q(taken token)`` and its target.

    Args:
        q_logits: (B, T, V) the critic's action logits ``L[:, :T]``.
        actions: (B, T) long, the taken tokens (any value where masked).
        targets: (B, T) from :func:`soft_bellman_targets`.
        mask: (B, T) bool.
        kind: ``"huber"`` (smooth L1, δ = 1) or ``"mse"``.
    """
    if kind not in ("huber", "mse"):
        raise ValueError(f"kind={kind!r} is not a critic loss; accepted: 'huber', 'mse'")
    safe_actions = torch.where(mask.bool(), actions, torch.zeros_like(actions))
    q_taken = q_logits.gather(-1, safe_actions.unsqueeze(-1)).squeeze(-1).float()
    if kind == "huber":
        per_token = F.smooth_l1_loss(q_taken, targets.float(), reduction="none")
    else:
        per_token = (q_taken - targets.float()) ** 2
    return masked_mean(per_token, mask)


def policy_loss(
    pi_logits: torch.Tensor,
    rho_logits: torch.Tensor,
    q_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    chunk_size: int = CHUNK,
) -> torch.Tensor:
    """Soft-actor loss, masked mean over positions of ``Σ_w π(w)[β(log π(w) − log ρ(w)) − Q(w)]``.

    Equal to ``β·KL(π‖ρ) − E_π[Q]``; minimised by ``π ∝ ρ·exp(Q/β)``. The gradient reaches π
    only (ρ and Q are detached). Shapes: three (B, T, V) and a (B, T) mask → scalar.
    """
    mask_f = mask.float()
    total = pi_logits.new_zeros((), dtype=torch.float32)
    for part in _chunks(pi_logits.shape[1], chunk_size):
        log_pi = F.log_softmax(pi_logits[:, part].float(), dim=-1)
        log_rho = F.log_softmax(rho_logits[:, part].detach().float(), dim=-1)
        q = q_logits[:, part].detach().float()
        per_position = (log_pi.exp() * (beta * (log_pi - log_rho) - q)).sum(-1)
        total = total + (per_position * mask_f[:, part]).sum()
    return total / mask_f.sum().clamp_min(1.0)


def public_actor_loss(
    pi_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """The public reference code's actor loss, kept only to test against: the uniform mean over
    the vocabulary of ``β·log π − Q.detach()``. Its gradient ``β(1/|V| − π)`` ignores ``Q``."""
    log_pi = F.log_softmax(pi_logits.float(), dim=-1)
    per_position = (beta * log_pi - q_logits.detach().float()).mean(-1)
    return masked_mean(per_position, mask)


@torch.no_grad()
def polyak_update(
    target_params: Iterable[torch.Tensor], source_params: Iterable[torch.Tensor], tau: float
) -> None:
    """In place: ``target ← tau·target + (1 − tau)·source`` (tau = 0.995 keeps 99.5 %)."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau={tau!r} must be in [0, 1]")
    targets, sources = list(target_params), list(source_params)
    if len(targets) != len(sources):
        raise ValueError(f"{len(targets)} target tensors but {len(sources)} source tensors")
    for target, source in zip(targets, sources):
        target.mul_(tau).add_(source.detach().to(target.dtype), alpha=1.0 - tau)
