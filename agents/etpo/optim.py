"""Optimizers: AdamW (torch) and Lion (Chen et al. 2023, as in the public ETPO code)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from etpo_gym.errors import ConfigError

OPTIMIZERS = ("adamw", "lion")


class Lion(torch.optim.Optimizer):
    """Lion: ``u = sign(β1·m + (1 − β1)·g)``; ``θ ← θ − lr·(u + wd·θ)``; ``m ← β2·m + (1 − β2)·g``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"Lion lr={lr!r} must be > 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"Lion betas={betas!r} must be in [0, 1)")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                update = (m * beta1 + p.grad * (1.0 - beta1)).sign_()
                p.mul_(1.0 - group["lr"] * group["weight_decay"]).add_(update, alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss


def make_optimizer(
    params: Iterable[torch.Tensor],
    name: str = "adamw",
    lr: float = 1e-5,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """An optimizer over ``params`` by name (``adamw`` or ``lion``; ``eps`` is AdamW's)."""
    # No requires_grad filter: peft's set_adapter toggles it on the adapters it switches away from.
    params = list(params)
    if not params:
        raise ConfigError("no trainable parameters to optimise")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay)
    if name == "lion":
        return Lion(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"optimizer={name!r} is not known; accepted: {', '.join(OPTIMIZERS)}")
