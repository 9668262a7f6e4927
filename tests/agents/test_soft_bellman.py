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


def test_huber_delta_is_one():
    """Quadratic inside |e| < 1, linear with slope 1 beyond: errors of a failed action (about 2
    with a reward baseline) are neither squared nor cut."""
    assert sb.HUBER_DELTA == 1.0
    errors = torch.tensor([[0.5, -0.5, 3.0, -2.0]])
    mask = torch.ones_like(errors, dtype=torch.bool)
    losses = [
        sb.critic_loss_taken(errors[:, i : i + 1], torch.zeros(1, 1), mask[:, i : i + 1]).item()
        for i in range(4)
    ]
    assert losses == pytest.approx([0.125, 0.125, 2.5, 1.5])
    assert sb.critic_loss_taken(errors, torch.zeros_like(errors), mask, "mse").item() == (
        pytest.approx((0.25 + 0.25 + 9 + 4) / 4)
    )


def _dueling_batch(seed: int = 4, B: int = 3, T: int = 5, V: int = 9):
    g = torch.Generator().manual_seed(seed)
    q, pi, rho = (torch.randn(B, T, V, generator=g) for _ in range(3))
    values = torch.randn(B, T, generator=g)
    actions = torch.randint(0, V, (B, T), generator=g)
    mask = torch.arange(T)[None, :] < torch.tensor([T, 2, 4])[:B, None]
    return q, values, pi, rho, actions, mask


def test_dueling_functions_equal_the_general_ones_on_the_dueling_q():
    q, values, pi, rho, actions, mask = _dueling_batch()
    beta = 0.2
    q_full = sb.dueling_q(q, values, rho, beta)
    assert torch.allclose(
        sb.dueling_soft_values(q, values, pi, beta),
        sb.soft_values(q_full, pi, rho, beta),
        atol=1e-5,
    )
    taken = sb.dueling_q_taken(q, values, rho, actions, mask, beta)
    expected = q_full.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(taken[mask], expected[mask], atol=1e-5)
    # the policy losses differ by the constant mean of V: the same gradient reaches π
    grads = []
    for loss_fn in (
        lambda lg: sb.dueling_policy_loss(lg, q, mask, beta) - sb.masked_mean(values, mask),
        lambda lg: sb.policy_loss(lg, rho, q_full, mask, beta),
    ):
        logits = pi.clone().requires_grad_(True)
        loss = loss_fn(logits)
        loss.backward()
        grads.append((loss.item(), logits.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_dueling_q_is_zero_and_soft_greedy_is_rho_when_the_critic_is_rho():
    """At initialisation the critic LM is ρ and V = 0: Q ≡ 0, π* = ρ, KL(π*‖ρ) = 0. The paper's
    logits-as-Q instead gives π* ∝ ρ^(1 + 1/β): far from ρ at β = 0.01."""
    _, _, _, rho, _, _ = _dueling_batch()
    q = sb.dueling_q(rho, torch.zeros(rho.shape[:2]), rho, beta=0.01)
    assert torch.equal(q, torch.zeros_like(q))
    assert sb.soft_greedy_kl(q, rho, 0.01).abs().max() < 1e-6
    assert sb.soft_greedy_kl(rho, rho, 0.01).min() > 0.5


def test_dueling_q_taken_gradient_reaches_the_critic_not_rho():
    q, values, _, rho, actions, mask = _dueling_batch()
    q, values, rho = (x.clone().requires_grad_(True) for x in (q, values, rho))
    sb.dueling_q_taken(q, values, rho, actions, mask, 0.1).sum().backward()
    assert q.grad.abs().sum() > 0 and values.grad.abs().sum() > 0
    assert rho.grad is None
    assert values.grad[~mask].abs().sum() == 0


def _naive_lambda_targets(next_values, bootstrap, path_kl, lengths, lam):
    out = torch.zeros(next_values.shape)
    for b, n in enumerate(lengths.tolist()):
        after = float(bootstrap[b])
        out[b, n - 1] = after
        for j in range(n - 2, -1, -1):
            after = (1 - lam) * float(next_values[b, j]) + lam * (after - float(path_kl[b, j]))
            out[b, j] = after
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_lambda_targets_match_a_naive_backward_loop(lam):
    pi, rho, q, mask, lengths, _, rewards, dones, next_obs_values = _random_batch(seed=2)
    beta, gamma = 0.1, 0.9
    next_values = sb.soft_values(q[:, 1:], pi[:, 1:], rho[:, 1:], beta)
    path_kl = torch.randn(mask.shape, generator=torch.Generator().manual_seed(9))
    targets = sb.soft_bellman_targets(
        next_values, next_obs_values, rewards, dones, mask, gamma, lam, path_kl
    )
    bootstrap = rewards + gamma * (1 - dones) * next_obs_values
    expected = _naive_lambda_targets(next_values, bootstrap, path_kl, lengths, lam)
    assert torch.allclose(targets, expected, atol=1e-5)
    if lam == 0.0:
        plain = sb.soft_bellman_targets(next_values, next_obs_values, rewards, dones, mask, gamma)
        assert torch.equal(targets, plain)
    if lam == 1.0:  # the sampled soft return: no next_values at all
        b = 0
        n = int(lengths[b])
        assert targets[b, 0].item() == pytest.approx(
            float(bootstrap[b] - path_kl[b, : n - 1].sum()), abs=1e-5
        )
    with pytest.raises(ValueError, match="next_path_kl"):
        sb.soft_bellman_targets(next_values, next_obs_values, rewards, dones, mask, gamma, 0.5)
    with pytest.raises(ValueError, match=r"td_lambda=1\.5"):
        sb.soft_bellman_targets(
            next_values, next_obs_values, rewards, dones, mask, gamma, 1.5, path_kl
        )


def test_terminated_transitions_do_not_bootstrap_and_truncated_ones_do():
    mask = torch.ones(2, 1, dtype=torch.bool)
    targets = sb.soft_bellman_targets(
        torch.zeros(2, 1), torch.tensor([5.0, 5.0]), torch.tensor([1.0, 1.0]),
        torch.tensor([1.0, 0.0]), mask, gamma=0.5,
    )  # fmt: skip
    assert targets[:, 0].tolist() == [1.0, 3.5]


def test_polyak_in_float32_keeps_small_steps_that_bf16_rounds_away():
    """τ = 0.995 for 200 steps: exact arithmetic leaves 0.995^200 ≈ 37 % of the gap. A bf16
    target keeps most of it (the step is below bf16's resolution); float32 matches exact."""
    source = [torch.full((64,), 1.0)]
    exact = 0.995**200
    for dtype, ok in ((torch.float32, True), (torch.bfloat16, False)):
        target = [torch.full((64,), 2.0, dtype=dtype)]
        for _ in range(200):
            sb.polyak_update(target, source, 0.995)
        gap = float(target[0].float().mean() - 1.0)
        assert (abs(gap - exact) < 1e-4) is ok, (dtype, gap)
