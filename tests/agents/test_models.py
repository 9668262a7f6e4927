"""π, Q, Q̄, ρ as full copies and as LoRA adapters on one base, on a tiny real GPT-2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from etpo_agents.etpo import soft_bellman as sb
from etpo_agents.etpo.models import EtpoModels
from etpo_agents.etpo.optim import make_optimizer
from etpo_gym.errors import ConfigError

PROMPTS = [[1], [2], [1, 3]]


def _models(path, mode, **kw):
    return EtpoModels(path, mode=mode, lora_r=4, lora_alpha=8, seed=0, **kw)


def _flat(params):
    return torch.cat([p.detach().flatten().float() for p in params])


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_roles_start_equal_and_training_moves_only_pi_and_q(tiny_lm_dir, mode):
    m = _models(tiny_lm_dir, mode)
    samples = m.generate(["pick", "again", "pick"], max_new_tokens=3, seed=1)
    prompts, actions = [s[0] for s in samples], [s[1] for s in samples]
    pi = m.action_logits("pi", prompts, actions)
    rho = m.action_logits("rho", prompts, actions)
    assert torch.allclose(pi, rho)  # π = ρ at the start
    q = m.action_logits("q", prompts, actions)
    assert torch.allclose(q, m.action_logits("q_target", prompts, actions))  # Q̄ = Q
    width = max(len(a) for a in actions)
    mask = torch.tensor([[j < len(a) for j in range(width)] for a in actions])
    taken = torch.tensor([a + [0] * (width - len(a)) for a in actions])

    before_pi, before_q = _flat(m.policy_parameters()), _flat(m.critic_parameters())
    before_q_bar = _flat(m._q_target_params)
    critic_opt = make_optimizer(m.critic_parameters(), "adamw", 1e-2)
    actor_opt = make_optimizer(m.policy_parameters(), "adamw", 1e-2, eps=1e-5)
    for _ in range(3):
        loss_q = sb.critic_loss(
            m.action_logits("q", prompts, actions, grad=True)[:, :width],
            taken,
            torch.ones(mask.shape),
            mask,
        )
        critic_opt.zero_grad()
        loss_q.backward()
        critic_opt.step()
        q_now = m.action_logits("q", prompts, actions)[:, :width]
        loss_pi = sb.policy_loss(
            m.action_logits("pi", prompts, actions, grad=True)[:, :width],
            rho[:, :width],
            q_now,
            mask,
            0.1,
        )
        actor_opt.zero_grad()
        loss_pi.backward()
        actor_opt.step()
        assert torch.isfinite(loss_q) and torch.isfinite(loss_pi)
    assert not torch.allclose(before_pi, _flat(m.policy_parameters()))
    assert not torch.allclose(before_q, _flat(m.critic_parameters()))
    assert torch.allclose(rho, m.action_logits("rho", prompts, actions))  # ρ never moves
    assert torch.allclose(before_q_bar, _flat(m._q_target_params))
    distance = float((_flat(m._q_target_params) - _flat(m.critic_parameters())).norm())
    m.polyak(0.5)
    closer = float((_flat(m._q_target_params) - _flat(m.critic_parameters())).norm())
    assert closer == pytest.approx(0.5 * distance, rel=1e-4)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_save_load_round_trip_and_policy_dir(tiny_lm_dir, tmp_path, mode):
    from transformers import AutoModelForCausalLM

    m = _models(tiny_lm_dir, mode)
    with torch.no_grad():
        for p in m.policy_parameters() + m.critic_parameters():
            p.add_(0.05 * torch.randn_like(p))
    actions = [[3, 4], [5], [6, 0]]
    expected = {r: m.action_logits(r, PROMPTS, actions) for r in ("pi", "q", "q_target")}
    m.save(tmp_path / "ckpt")
    fresh = _models(tiny_lm_dir, mode)
    fresh.load(tmp_path / "ckpt")
    for role, logits in expected.items():
        assert torch.allclose(fresh.action_logits(role, PROMPTS, actions), logits, atol=1e-5), role
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "policy").eval()
    ids = torch.tensor([[1, 3, 4]])
    with torch.no_grad():
        direct = policy(input_ids=ids).logits[0, 0]
    assert torch.allclose(direct, expected["pi"][1 - 1, 0], atol=1e-4)


def test_generate_is_seeded_and_rescored_consistently(tiny_lm_dir):
    m = _models(tiny_lm_dir, "full")
    a = m.generate(["pick", "again"], max_new_tokens=4, seed=7)
    b = m.generate(["pick", "again"], max_new_tokens=4, seed=7)
    assert a == b
    state = torch.get_rng_state()
    m.generate(["pick"], max_new_tokens=2, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched
    for prompt, action, _text in a:
        assert 1 <= len(action) <= 4
        logits = m.action_logits("pi", [prompt], [action])
        assert logits.shape == (1, len(action) + 1, 7)


def test_bf16_compute_keeps_float32_master_weights(tiny_lm_dir):
    m = _models(tiny_lm_dir, "full", dtype="bfloat16")
    assert all(p.dtype == torch.float32 for p in m.policy_parameters())
    assert next(m.rho.parameters()).dtype == torch.bfloat16
    p = m.policy_parameters()[0]
    before = p.detach().clone()
    opt = torch.optim.SGD([p], lr=1e-6)
    p.grad = torch.ones_like(p)
    opt.step()
    assert not torch.equal(before, p.detach())  # a 1e-6 step is not rounded away
    logits = m.action_logits("pi", PROMPTS, [[3], [4], [5]])
    assert torch.isfinite(logits).all()


def test_bad_settings_name_the_value(tiny_lm_dir, tmp_path):
    with pytest.raises(ConfigError, match="'half'"):
        EtpoModels(tiny_lm_dir, dtype="half")
    with pytest.raises(ConfigError, match="'qlora'"):
        EtpoModels(tiny_lm_dir, mode="qlora")
    with pytest.raises(ConfigError, match=r"config\.json"):
        EtpoModels(tmp_path)
    m = _models(tiny_lm_dir, "full")
    with pytest.raises(ConfigError, match="'value'"):
        m.action_logits("value", PROMPTS, [[3], [4], [5]])


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_dropout_is_off_so_pi_equals_rho_at_the_start(tiny_lm_dir, tmp_path, mode):
    with_dropout = tmp_path / "dropout"
    shutil.copytree(tiny_lm_dir, with_dropout)
    config = json.loads((with_dropout / "config.json").read_text())
    config.update(resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)
    (with_dropout / "config.json").write_text(json.dumps(config))
    m = _models(with_dropout, mode, lora_dropout=0.5)
    samples = m.generate(["pick", "again"], max_new_tokens=3, seed=1)
    prompts, actions = [s[0] for s in samples], [s[1] for s in samples]
    rho = m.action_logits("rho", prompts, actions)
    for role in ("pi", "q"):
        first = m.action_logits(role, prompts, actions, grad=True)
        second = m.action_logits(role, prompts, actions, grad=True)
        assert torch.equal(first, second), role  # deterministic: no dropout mask
        assert first.requires_grad, role  # and still trainable
    assert torch.allclose(m.action_logits("pi", prompts, actions), rho)


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("q_param", ["head", "dueling"])
def test_new_q_starts_at_zero_so_the_soft_greedy_policy_is_rho(tiny_lm_dir, mode, q_param):
    m = _models(tiny_lm_dir, mode, q_param=q_param)
    samples = m.generate(["pick", "again", "pick"], max_new_tokens=3, seed=2)
    prompts, actions = [s[0] for s in samples], [s[1] for s in samples]
    rho = m.action_logits("rho", prompts, actions)
    for role in ("q", "q_target"):
        logits, values = m.action_outputs(role, prompts, actions)
        if q_param == "dueling":
            assert values is not None and values.shape == rho.shape[:2]
            q = sb.dueling_q(logits, values, rho, beta=0.01)
        else:
            assert values is None
            q = logits
        assert q.abs().max() < 1e-5, role  # Q ≡ 0: reward units, nothing preferred yet
        assert sb.soft_greedy_kl(q, rho, 0.01).max() < 1e-6, role  # π* = ρ
    paper = _models(tiny_lm_dir, mode, q_param="paper")
    q_paper, no_values = paper.action_outputs("q", prompts, actions)
    assert no_values is None
    assert sb.soft_greedy_kl(q_paper, rho, 0.01).mean() > 0.1  # π* ∝ ρ^101 is not ρ


def test_dueling_value_head_trains_and_moves_q_bar_by_polyak(tiny_lm_dir):
    m = _models(tiny_lm_dir, "full", q_param="dueling")
    opt = make_optimizer(m.critic_parameters(), "adamw", 1e-2)
    prompts, actions = PROMPTS, [[3, 4], [5], [6, 0]]
    for _ in range(5):
        _, values = m.action_outputs("q", prompts, actions, grad=True)
        loss = ((values - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, v_q = m.action_outputs("q", prompts, actions)
    _, v_bar = m.action_outputs("q_target", prompts, actions)
    assert v_q.mean() > 0.01 and torch.equal(v_bar, torch.zeros_like(v_bar))
    m.polyak(0.5)
    _, v_bar = m.action_outputs("q_target", prompts, actions)
    assert 0 < v_bar.mean() < v_q.mean()


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_q_bar_is_float32_and_the_lora_base_takes_the_compute_dtype(tiny_lm_dir, mode):
    m = _models(tiny_lm_dir, mode, dtype="bfloat16")
    for role in ("pi", "q", "q_target"):
        params = {"pi": m.policy_parameters, "q": m.critic_parameters}.get(
            role, lambda: m._q_target_params
        )()
        assert all(p.dtype == torch.float32 for p in params), role
    if mode == "lora":
        base = [p for n, p in m.peft.named_parameters() if "lora_" not in n]
        assert base and all(p.dtype == torch.bfloat16 for p in base)
        assert m.memory_report()["base"] == sum(p.numel() * 2 for p in base)
    else:
        assert next(m.rho.parameters()).dtype == torch.bfloat16
    samples = m.generate(["pick"], max_new_tokens=2, seed=0)
    logits = m.action_logits("q", [samples[0][0]], [samples[0][1]], grad=True)
    assert torch.isfinite(logits).all() and logits.requires_grad


def test_bad_q_param_names_the_value(tiny_lm_dir):
    with pytest.raises(ConfigError, match=r"q_param='logits'.*head, dueling, paper"):
        _models(tiny_lm_dir, "full", q_param="logits")
