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

Two parametrisations of ``Q``:

* ``paper``: ``Q(s, ·)`` is the critic LM's logits. At the start the critic is a copy of ρ, so
  ``π* ∝ ρ·exp(logits/β) ≈ ρ^(1 + 1/β)``: for β = 0.01 nearly greedy decoding, and Q's values are
  logit-sized (tens), not reward-sized. The functions above take such ``q_logits`` as Q.
* ``dueling``: ``Q(s, w) = V(s) + β·(log π_Q(w|s) − log ρ(w|s))`` with ``π_Q`` the critic LM's
  softmax and ``V`` a scalar value head that starts at zero. At the start ``π_Q = ρ`` and
  ``V = 0``, so ``Q ≡ 0`` and ``π* = ρ``; ``V`` is on the reward's scale from the first update.
  For this ``Q`` the soft-greedy policy is ``π* = π_Q`` exactly, the soft value of π is
  ``V − β·KL(π‖π_Q)`` and the policy loss is ``β·KL(π‖π_Q) − V``: the ``dueling_*`` functions
  compute these without a (B, T, V) float32 ``Q`` tensor (:func:`dueling_q` builds one, to test
  them against the general functions).

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
    "HUBER_DELTA",
    "critic_loss",
    "critic_loss_taken",
    "dueling_policy_loss",
    "dueling_q",
    "dueling_q_taken",
    "dueling_soft_values",
    "entropy",
    "kl_divergence",
    "last_token_mask",
    "masked_mean",
    "policy_loss",
    "polyak_update",
    "public_actor_loss",
    "soft_bellman_targets",
    "soft_greedy_kl",
    "soft_values",
    "taken_log_probs",
]

CHUNK = 64
#: Huber's δ in the critic loss: quadratic for |Q − y| < 1, linear beyond. Rewards lie in
#: [−1, 1] (an error is −1), so with a reward baseline a failed action's error is up to about 2.
HUBER_DELTA = 1.0


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
    td_lambda: float = 0.0,
    next_path_kl: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token soft Bellman targets (B, T), zero where ``mask`` is false; detached.

    With ``td_lambda = 0`` (the paper) token ``j`` inside an action has target
    ``next_values[:, j]`` and the last token ``r + γ·(1 − done)·V(s′)``. With ``td_lambda = λ > 0``
    the targets are λ-returns along the sampled tokens, computed backwards from the last token:
    ``G_j = (1 − λ)·next_values[:, j] + λ·(G_{j+1} − next_path_kl[:, j])``, where
    ``next_path_kl[:, j] = β·log(π/ρ)`` of token ``j + 1`` (so ``G_{j+1} − next_path_kl[:, j]``
    is a one-sample estimate of the soft value after token ``j``; on-policy, its mean is the
    value). ``λ = 1`` gives the Monte-Carlo soft return ``r − β·Σ_{k>j} log(π/ρ)(w_k)`` (plus the
    bootstrap), which reaches every token of an action in one update instead of one token per
    target refresh.

    Args:
        next_values: (B, T); entry ``j`` is the soft value at the position after token ``j``
            (``soft_values(Lq̄[:, 1:], Lπ[:, 1:], Lρ[:, 1:], β)``).
        next_obs_values: (B,) soft value of the next observation at its first action position.
        rewards: (B,) reward of the action.
        dones: (B,) true where the episode ended (terminated; not truncated).
        mask: (B, T) bool, true on real action tokens (left-aligned).
        gamma: discount between actions (none inside an action).
        td_lambda: λ in [0, 1].
        next_path_kl: (B, T), needed when ``td_lambda > 0``.
    """
    if not 0.0 <= td_lambda <= 1.0:
        raise ValueError(f"td_lambda={td_lambda!r} must be in [0, 1]")
    mask = mask.bool()
    last = last_token_mask(mask)
    bootstrap = rewards.float() + gamma * (1.0 - dones.float()) * next_obs_values.float()
    targets = torch.where(last, bootstrap[:, None], next_values.float())
    if td_lambda > 0:
        if next_path_kl is None:
            raise ValueError("td_lambda > 0 needs next_path_kl (β·log(π/ρ) of the next token)")
        after = torch.zeros_like(bootstrap)  # G_{j+1}; only read where token j+1 is real
        for j in range(mask.shape[1] - 1, -1, -1):
            inside = mask[:, j] & ~last[:, j]
            mixed = (1 - td_lambda) * next_values[:, j].float() + td_lambda * (
                after - next_path_kl[:, j].float()
            )
            targets[:, j] = torch.where(inside, mixed, targets[:, j])
            after = targets[:, j]
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
        kind: ``"huber"`` (δ = :data:`HUBER_DELTA`) or ``"mse"``.
    """
    safe_actions = torch.where(mask.bool(), actions, torch.zeros_like(actions))
    q_taken = q_logits.gather(-1, safe_actions.unsqueeze(-1)).squeeze(-1).float()
    return critic_loss_taken(q_taken, targets, mask, kind)


def critic_loss_taken(
    q_taken: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str = "huber"
) -> torch.Tensor:
    """Masked mean loss between ``Q(taken token)`` (B, T) and its target (B, T).

    ``"huber"``: ``½e²`` for ``|e| < δ``, ``δ(|e| − ½δ)`` beyond, with ``δ =`` :data:`HUBER_DELTA`;
    ``"mse"``: ``e²``.
    """
    if kind not in ("huber", "mse"):
        raise ValueError(f"kind={kind!r} is not a critic loss; accepted: 'huber', 'mse'")
    error = q_taken.float() - targets.float()
    if kind == "huber":
        per_token = F.huber_loss(
            error, torch.zeros_like(error), reduction="none", delta=HUBER_DELTA
        )
    else:
        per_token = error**2
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


def taken_log_probs(
    logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``log softmax(logits)[action]`` per position: (B, T, V), (B, T), (B, T) → (B, T) float32
    (0 where masked); differentiable."""
    safe_actions = torch.where(mask.bool(), actions, torch.zeros_like(actions))
    parts = []
    for part in _chunks(logits.shape[1], CHUNK):
        log_p = F.log_softmax(logits[:, part].float(), dim=-1)
        parts.append(log_p.gather(-1, safe_actions[:, part].unsqueeze(-1)).squeeze(-1))
    return torch.cat(parts, dim=1) * mask.float()


def dueling_q(
    q_logits: torch.Tensor, values: torch.Tensor, rho_logits: torch.Tensor, beta: float
) -> torch.Tensor:
    """The dueling ``Q = V + β·(log π_Q − log ρ)`` over the vocabulary: (B, T, V), (B, T),
    (B, T, V) → (B, T, V) float32. For tests and diagnostics; training uses the ``dueling_*``
    functions, which never build this tensor."""
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    log_rho = F.log_softmax(rho_logits.float(), dim=-1)
    return values.float()[..., None] + beta * (log_q - log_rho)


def dueling_q_taken(
    q_logits: torch.Tensor,
    values: torch.Tensor,
    rho_logits: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Dueling ``Q(s, taken token)`` (B, T) float32, 0 where masked; the gradient reaches
    ``q_logits`` and ``values`` (ρ is detached). Shapes: (B, T, V), (B, T), (B, T, V), (B, T),
    (B, T)."""
    log_q = taken_log_probs(q_logits, actions, mask)
    log_rho = taken_log_probs(rho_logits.detach(), actions, mask)
    return (values.float() + beta * (log_q - log_rho)) * mask.float()


@torch.no_grad()
def dueling_soft_values(
    q_logits: torch.Tensor,
    values: torch.Tensor,
    pi_logits: torch.Tensor,
    beta: float,
    chunk_size: int = CHUNK,
) -> torch.Tensor:
    """Soft value ``Σ_w π(w) Q(w) − β·KL(π‖ρ)`` of the dueling Q, which is ``V − β·KL(π‖π_Q)``:
    (B, T, V), (B, T), (B, T, V) → (B, T) float32. No gradient (callers pass Q̄'s outputs)."""
    return values.float() - beta * kl_divergence(pi_logits, q_logits, chunk_size)


def dueling_policy_loss(
    pi_logits: torch.Tensor,
    q_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    chunk_size: int = CHUNK,
) -> torch.Tensor:
    """:func:`policy_loss` for the dueling Q, up to the constant ``−V``: the masked mean of
    ``β·KL(π‖π_Q)``, minimised by ``π = π_Q = π*``. Gradient to π only. (B, T, V), (B, T, V),
    (B, T) → scalar."""
    mask_f = mask.float()
    total = pi_logits.new_zeros((), dtype=torch.float32)
    for part in _chunks(pi_logits.shape[1], chunk_size):
        log_pi = F.log_softmax(pi_logits[:, part].float(), dim=-1)
        log_q = F.log_softmax(q_logits[:, part].detach().float(), dim=-1)
        per_position = beta * (log_pi.exp() * (log_pi - log_q)).sum(-1)
        total = total + (per_position * mask_f[:, part]).sum()
    return total / mask_f.sum().clamp_min(1.0)


@torch.no_grad()
def soft_greedy_kl(q: torch.Tensor, rho_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """KL(π*‖ρ) per position for ``π* ∝ ρ·exp(Q/β)``: Q values (…, V) and ρ logits → (…)."""
    log_rho = F.log_softmax(rho_logits.float(), dim=-1)
    log_star = F.log_softmax(log_rho + q.float() / beta, dim=-1)
    return (log_star.exp() * (log_star - log_rho)).sum(-1)


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
