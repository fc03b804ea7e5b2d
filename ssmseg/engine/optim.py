"""Optimisers (AdamW, SGD; no weight decay on norms, biases, A_log and D) and epoch-level schedules:
linear warmup followed by cosine, cosine with warm restarts, polynomial, reduce-on-plateau or constant."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ssmseg.config.schema import OptimConfig, ScheduleConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or getattr(p, "_no_weight_decay", False)
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class EpochSchedule:
    """The learning rate of each epoch; ``step(metric)`` after an epoch feeds reduce-on-plateau."""

    def __init__(self, cfg: ScheduleConfig, base_lr: float, epochs: int, mode: str = "max") -> None:
        self.cfg, self.base, self.epochs, self.mode = cfg, base_lr, epochs, mode
        self.plateau_scale, self.best, self.bad = 1.0, None, 0

    def lr(self, epoch: int) -> float:
        c, base = self.cfg, self.base
        if epoch < c.warmup_epochs:
            s = c.warmup_start_factor
            return base * (s + (1 - s) * epoch / c.warmup_epochs)
        t, T = epoch - c.warmup_epochs, max(1, self.epochs - c.warmup_epochs)
        if c.name == "cosine":
            return c.min_lr + (base - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t / T))
        if c.name == "poly":
            return c.min_lr + (base - c.min_lr) * (1 - t / T) ** c.power
        if c.name == "cosine_restarts":
            period = c.t0
            while t >= period:
                t -= period
                period *= c.t_mult
            return c.min_lr + (base - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t / period))
        if c.name == "plateau":
            return base * self.plateau_scale
        return base

    def step(self, metric: float | None) -> None:
        if self.cfg.name != "plateau" or metric is None:
            return
        better = self.best is None or (metric > self.best if self.mode == "max" else metric < self.best)
        if better:
            self.best, self.bad = metric, 0
            return
        self.bad += 1
        if self.bad > self.cfg.plateau_patience:
            self.plateau_scale *= self.cfg.plateau_factor
            self.bad = 0

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        lr = self.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale, self.best, self.bad = state["plateau_scale"], state["best"], state["bad"]
