"""Optimizers and per-step learning-rate schedules.

- ``sgd``: SGD with momentum (optionally Nesterov).
- ``rmsprop``: the paper's RMSProp (decay 0.9, momentum 0.9) in TensorFlow's
  form, ``TFRMSprop``: ``ms = alpha ms + (1 - alpha) g^2`` (``ms`` starts at 1),
  ``mom = momentum mom + lr g / sqrt(ms + eps)``, ``p -= mom``. torch's
  ``RMSprop`` starts ``ms`` at 0 and adds ``eps`` outside the square root, which
  behaves differently early in training; hence this small class.
- ``adamw``: torch's AdamW.

Weight decay skips BatchNorm parameters and biases (every parameter with one
dimension) unless ``decay_bn_and_bias`` is set.

Schedules are ``LambdaLR`` factors of the step, so resuming restores them
exactly: ``cosine`` ``f = r + (1 - r) (1 + cos(pi p)) / 2`` with ``p`` the
fraction of post-warm-up steps done and ``r = min_lr_ratio``; ``step``
``gamma^floor(epoch / step_epochs)``; ``exponential`` ``decay^epoch`` (the
paper's 0.98 per epoch, applied at epoch boundaries); warm-up multiplies by
``step / warmup_steps`` for the first ``warmup_steps``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from manifold_lab.train.config import OptimConfig, ScheduleConfig


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow implements it (see the module docstring)."""

    def __init__(self, params, lr, alpha=0.9, eps=1e-3, momentum=0.9, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                mom.mul_(group["momentum"]).addcdiv_(g, (ms + group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


def param_groups(model: nn.Module, weight_decay: float, decay_bn_and_bias: bool) -> list[dict]:
    """Two groups: weights with decay, and 1-D parameters (BN, biases) without (unless asked)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 and not decay_bn_and_bias else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.decay_bn_and_bias)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "rmsprop":
        return TFRMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(step: int, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps (see the module docstring)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    epoch = step // steps_per_epoch
    if cfg.name == "cosine":
        total = max(1, epochs * steps_per_epoch - warmup)
        progress = min(1.0, (step - warmup) / total)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "step":
        return cfg.gamma ** (epoch // cfg.step_epochs)
    if cfg.name == "exponential":
        return cfg.decay**epoch
    return 1.0


def build_scheduler(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch, epochs))
