"""The ETPO math against naive loops, closed forms and a toy token-level MDP."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from etpo_agents.etpo import soft_bellman as sb
from etpo_agents.etpo.optim import Lion, make_optimizer
from etpo_gym.errors import ConfigError

torch.set_default_dtype(torch.float32)


def _random_batch(seed: int = 0, B: int = 4, T: int = 6, V: int = 11):
    g = torch.Generator().manual_seed(seed)
    pi, rho, q = (torch.randn(B, T + 1, V, generator=g) for _ in range(3))
    lengths = torch.tensor([T, 1, 3, T - 1][:B])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    actions = torch.randint(0, V, (B, T), generator=g)
    rewards = torch.randn(B, generator=g)
    dones = torch.tensor([1.0, 0.0, 1.0, 0.0][:B])
    next_obs_values = torch.randn(B, generator=g)
    return pi, rho, q, mask, lengths, actions, rewards, dones, next_obs_values


def _naive_soft_value(q, pi, rho, beta):
    p = torch.softmax(pi.double(), -1)
    kl = sum(
        p[w] * (math.log(p[w]) - torch.log_softmax(rho.double(), -1)[w]) for w in range(len(p))
    )
    return float(sum(p[w] * q[w] for w in range(len(p))) - beta * kl)


def test_soft_values_and_kl_match_a_naive_loop():
    pi, rho, q, *_ = _random_batch()
    beta = 0.3
    values = sb.soft_values(q, pi, rho, beta, chunk_size=2)
    kl = sb.kl_divergence(pi, rho, chunk_size=3)
    for b, t in itertools.product(range(pi.shape[0]), range(pi.shape[1])):
        assert values[b, t].item() == pytest.approx(
            _naive_soft_value(q[b, t], pi[b, t], rho[b, t], beta), abs=1e-5
        )
        assert kl[b, t].item() == pytest.approx(
            _naive_soft_value(torch.zeros_like(q[b, t]), pi[b, t], rho[b, t], 1.0) * -1, abs=1e-5
        )


def test_targets_match_a_naive_per_token_loop():
    pi, rho, q, mask, lengths, _, rewards, dones, next_obs_values = _random_batch()
    beta, gamma = 0.1, 0.9
    next_values = sb.soft_values(q[:, 1:], pi[:, 1:], rho[:, 1:], beta)
    targets = sb.soft_bellman_targets(next_values, next_obs_values, rewards, dones, mask, gamma)
    for b in range(pi.shape[0]):
        n = int(lengths[b])
        for j in range(pi.shape[1] - 1):
            if j >= n:
                expected = 0.0
            elif j < n - 1:  # inside the action: soft value at the next position, no reward
                expected = _naive_soft_value(q[b, j + 1], pi[b, j + 1], rho[b, j + 1], beta)
            else:  # last token: reward + discounted soft value of the next observation
                expected = float(rewards[b] + gamma * (1 - dones[b]) * next_obs_values[b])
            assert targets[b, j].item() == pytest.approx(expected, abs=1e-5), (b, j)


def test_losses_match_a_naive_per_token_loop():
    pi, rho, q, mask, lengths, actions, *_ = _random_batch(seed=1)
    T = mask.shape[1]
    targets = torch.randn(mask.shape)
    beta = 0.2
    critic = sb.critic_loss(q[:, :T], actions, targets, mask, kind="mse")
    policy = sb.policy_loss(pi[:, :T], rho[:, :T], q[:, :T], mask, beta, chunk_size=2)
    sq, pl, count = 0.0, 0.0, 0
    for b in range(mask.shape[0]):
        for j in range(int(lengths[b])):
            sq += float(q[b, j, actions[b, j]] - targets[b, j]) ** 2
            p = torch.softmax(pi[b, j].double(), -1)
            lp, lr = (
                torch.log_softmax(pi[b, j].double(), -1),
                torch.log_softmax(rho[b, j].double(), -1),
            )
            pl += float(sum(p[w] * (beta * (lp[w] - lr[w]) - q[b, j, w]) for w in range(len(p))))
            count += 1
    assert critic.item() == pytest.approx(sq / count, rel=1e-5)
    assert policy.item() == pytest.approx(pl / count, rel=1e-5)
    huber = sb.critic_loss(q[:, :T], actions, targets, mask, kind="huber")
    assert 0 < huber.item() < critic.item()
    with pytest.raises(ValueError, match="'l1'"):
        sb.critic_loss(q[:, :T], actions, targets, mask, kind="l1")


def _minimise(loss_fn, logits: torch.Tensor, steps: int = 3000) -> torch.Tensor:
    logits = logits.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(logits).backward()
        opt.step()
    return torch.softmax(logits.detach(), -1)


def test_policy_loss_converges_to_the_soft_greedy_policy():
    g = torch.Generator().manual_seed(3)
    V, beta = 7, 0.5
    rho = torch.randn(1, 1, V, generator=g)
    q = torch.randn(1, 1, V, generator=g)
    mask = torch.ones(1, 1, dtype=torch.bool)
    pi = _minimise(lambda lg: sb.policy_loss(lg, rho, q, mask, beta), torch.zeros(1, 1, V))
    expected = torch.softmax(torch.log_softmax(rho, -1) + q / beta, -1)
    assert torch.allclose(pi, expected, atol=2e-3)


def test_public_actor_loss_fails_the_closed_form_and_ignores_q():
    g = torch.Generator().manual_seed(3)
    V, beta = 7, 0.5
    rho = torch.randn(1, 1, V, generator=g)
    q = torch.randn(1, 1, V, generator=g)
    mask = torch.ones(1, 1, dtype=torch.bool)
    expected = torch.softmax(torch.log_softmax(rho, -1) + q / beta, -1)
    pi = _minimise(lambda lg: sb.public_actor_loss(lg, q, mask, beta), torch.zeros(1, 1, V), 300)
    assert (pi - expected).abs().max() > 0.1
    # its gradient is the same whatever Q is: it cannot learn from the reward
    logits = torch.randn(1, 1, V, generator=g, requires_grad=True)
    grads = []
    for q_any in (q, -5 * q, torch.zeros_like(q)):
        logits.grad = None
        sb.public_actor_loss(logits, q_any, mask, beta).backward()
        grads.append(logits.grad.clone())
    assert torch.allclose(grads[0], grads[1]) and torch.allclose(grads[0], grads[2])
    logits.grad = None
    sb.policy_loss(logits, rho, q, mask, beta).backward()
    g_q = logits.grad.clone()
    logits.grad = None
    sb.policy_loss(logits, rho, -q, mask, beta).backward()
    assert not torch.allclose(g_q, logits.grad)


def test_policy_loss_gradient_reaches_pi_only():
    pi, rho, q, mask, *_ = _random_batch()
    T = mask.shape[1]
    pi, rho, q = (x[:, :T].clone().requires_grad_(True) for x in (pi, rho, q))
    sb.policy_loss(pi, rho, q, mask, 0.1).backward()
    assert pi.grad is not None and pi.grad.abs().sum() > 0
    assert rho.grad is None and q.grad is None
    # masked positions get no gradient
    assert pi.grad[1, 1:].abs().sum() == 0


def test_toy_token_mdp_targets_converge_to_the_soft_optimal_values():
    """Two actions per episode, each of two tokens over a vocabulary of 3; tabular Q over
    prefixes. Iterating the targets with π soft-greedy reaches the analytic soft-optimal Q*."""
    V, beta, gamma = 3, 0.2, 0.9
    g = torch.Generator().manual_seed(0)
    reward = torch.rand(2, V, V, generator=g)  # reward[t, w1, w2] of action (w1, w2) at step t
    rho_logits = torch.randn(V, generator=g)
    log_rho = torch.log_softmax(rho_logits, -1)

    def soft_max(qv):  # V*(node) = β log Σ ρ exp(Q/β)
        return beta * torch.logsumexp(log_rho + qv / beta, -1)

    # analytic, backwards: step 1 then step 0
    q_star = {}
    v_root = {2: torch.tensor(0.0)}
    for t in (1, 0):
        for w1 in range(V):
            q_star[(t, w1)] = reward[t, w1] + gamma * v_root[t + 1]
        q_star[(t, None)] = torch.stack([soft_max(q_star[(t, w1)]) for w1 in range(V)])
        v_root[t] = soft_max(q_star[(t, None)])

    q = {key: torch.zeros(V) for key in q_star}  # Q̄ = Q, tabular
    transitions = [(t, w1, w2) for t in (0, 1) for w1 in range(V) for w2 in range(V)]
    for _ in range(6):

        def pi_of(qv):
            return log_rho + qv / beta  # soft-greedy logits

        L_q = torch.stack(
            [torch.stack([q[(t, None)], q[(t, w1)], q[(t, w1)]]) for t, w1, _ in transitions]
        )
        L_pi = pi_of(L_q)
        L_rho = rho_logits.expand_as(L_q)
        mask = torch.ones(len(transitions), 2, dtype=torch.bool)
        next_values = sb.soft_values(L_q[:, 1:], L_pi[:, 1:], L_rho[:, 1:], beta)
        nxt = torch.stack([q[(1, None)] if t == 0 else torch.zeros(V) for t, _, _ in transitions])
        next_obs = sb.soft_values(
            nxt[:, None], pi_of(nxt)[:, None], rho_logits.expand_as(nxt)[:, None], beta
        )[:, 0]
        dones = torch.tensor([float(t == 1) for t, _, _ in transitions])
        rewards = torch.tensor([float(reward[t, w1, w2]) for t, w1, w2 in transitions])
        targets = sb.soft_bellman_targets(next_values, next_obs, rewards, dones, mask, gamma)
        new = {key: value.clone() for key, value in q.items()}
        for (t, w1, w2), y in zip(transitions, targets):
            new[(t, None)][w1] = y[0]
            new[(t, w1)][w2] = y[1]
        q = new
    for key in q_star:
        assert torch.allclose(q[key], q_star[key], atol=1e-5), key


def test_polyak_update_by_hand():
    target = [torch.tensor([1.0, 2.0])]
    source = [torch.tensor([3.0, -2.0])]
    sb.polyak_update(target, source, 0.75)
    assert torch.allclose(target[0], torch.tensor([1.5, 1.0]))
    with pytest.raises(ValueError, match=r"1\.5"):
        sb.polyak_update(target, source, 1.5)


def test_lion_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    p.grad = torch.tensor([0.2, -0.3, 0.0])
    opt.step()
    # m = 0 → update = sign(0.1·g) = [1, −1, 0]; p ← p·(1 − 0.1·0.5) − 0.1·update
    assert torch.allclose(p.detach(), torch.tensor([0.95 - 0.1, -0.95 + 0.1, 0.475]))
    assert torch.allclose(opt.state[p]["exp_avg"], 0.01 * torch.tensor([0.2, -0.3, 0.0]))
    with pytest.raises(ConfigError, match="'sgd'"):
        make_optimizer([p], "sgd")


def test_bf16_logits_are_handled_in_float32_chunks():
    pi, rho, q, mask, *_ = _random_batch(B=4, T=6, V=50)
    exact = sb.soft_values(q, pi, rho, 0.1)
    half = sb.soft_values(q.bfloat16(), pi.bfloat16(), rho.bfloat16(), 0.1, chunk_size=1)
    assert half.dtype == torch.float32
    assert torch.allclose(exact, half, atol=0.1)
    loss = sb.policy_loss(
        pi[:, :6].bfloat16().requires_grad_(), rho[:, :6].bfloat16(), q[:, :6].bfloat16(), mask, 0.1
    )
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
