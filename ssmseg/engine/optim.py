"""Optimisers (AdamW, SGD; no weight decay on norms, biases, A_log and D) and epoch-level schedules:
linear warmup followed by cosine, cosine with warm restarts, polynomial, reduce-on-plateau or constant."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ssmseg.config.schema import OptimConfig, ScheduleConfig


def param_groups(
    model: nn.Module, weight_decay: float, lr_scales: Mapping[nn.Module, float] | None = None
) -> list[dict[str, Any]]:
    """Decay and no-decay groups; each submodule of ``lr_scales`` with a factor other than 1 gets its own pair,
    whose ``lr_scale`` the schedule multiplies its learning rate by (:meth:`EpochSchedule.apply`)."""
    scaled = {id(p): f for m, f in (lr_scales or {}).items() if f != 1.0 for p in m.parameters()}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, False): [], (1.0, True): []}
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or getattr(p, "_no_weight_decay", False)
        groups.setdefault((scaled.get(id(p), 1.0), skip), []).append(p)
    out = []
    for (scale, skip), params in groups.items():
        if scale != 1.0 and not params:
            continue
        group: dict[str, Any] = {"params": params, "weight_decay": 0.0 if skip else weight_decay}
        if scale != 1.0:
            group["lr_scale"] = scale
        out.append(group)
    return out


def build_optimizer(
    cfg: OptimConfig, model: nn.Module, lr_scales: Mapping[nn.Module, float] | None = None
) -> torch.optim.Optimizer:
    """AdamW or SGD over :func:`param_groups`; a group's initial lr is ``cfg.lr`` times its ``lr_scale``."""
    groups = param_groups(model, cfg.weight_decay, lr_scales)
    for group in groups:
        group["lr"] = cfg.lr * group.get("lr_scale", 1.0)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


# Schedules whose learning rate depends on the total number of epochs (what extending or fitting a run changes).
LENGTH_DEPENDENT = ("cosine", "poly")


class EpochSchedule:
    """The learning rate of each epoch; ``step(metric)`` after an epoch feeds reduce-on-plateau.

    A run is one or more *stages*: the first follows ``cfg`` over ``epochs``; a finished cosine or poly run
    that is extended (``resumed(start, ...)`` with a larger total) gets a second stage from its first new epoch:
    ``continue`` keeps the last learning rate, ``restart`` runs ``cfg`` anew (warmup included) over the added
    epochs. ``record()`` describes the stages for history.json.
    """

    def __init__(
        self, cfg: ScheduleConfig, base_lr: float, epochs: int, mode: str = "max", extend: str = "continue"
    ) -> None:
        self.cfg, self.base, self.epochs, self.mode, self.extend = cfg, base_lr, epochs, mode, extend
        self.plateau_scale, self.best, self.bad = 1.0, None, 0
        self.stages: list[dict[str, Any]] = [{"start": 0, "kind": "schedule"}]
        self.changes: list[dict[str, Any]] = []  # total epochs changed while a stage ran (fitted, stretched)
        self.saved_epochs = epochs  # the total the restored checkpoint was trained towards

    def _stage(self, epoch: int) -> tuple[dict[str, Any], int]:
        """The stage that holds ``epoch`` and its length."""
        i = max(k for k, st in enumerate(self.stages) if st["start"] <= epoch) if epoch >= 0 else 0
        end = self.stages[i + 1]["start"] if i + 1 < len(self.stages) else self.epochs
        return self.stages[i], max(1, end - self.stages[i]["start"])

    def lr(self, epoch: int) -> float:
        stage, length = self._stage(epoch)
        if stage["kind"] == "continue":
            return stage["lr"]
        return self._formula(epoch - stage["start"], length)

    def _formula(self, epoch: int, epochs: int) -> float:
        c, base = self.cfg, self.base
        if epoch < c.warmup_epochs:
            s = c.warmup_start_factor
            return base * (s + (1 - s) * epoch / c.warmup_epochs)
        t, T = epoch - c.warmup_epochs, max(1, epochs - c.warmup_epochs)
        if c.name == "cosine":
            return c.min_lr + (base - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t / T))
        if c.name == "poly":
            return c.min_lr + (base - c.min_lr) * (1 - min(t, T) / T) ** c.power
        if c.name == "cosine_restarts":
            period = c.t0
            while t >= period:
                t -= period
                period *= c.t_mult
            return c.min_lr + (base - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t / period))
        if c.name == "plateau":
            return base * self.plateau_scale
        return base

    def resumed(self, start: int) -> str | None:
        """After a restore: when the run's total epochs changed (``self.epochs`` now, ``saved_epochs`` then) and
        the schedule depends on it, decide what the epochs from ``start`` follow; returns a line for the log."""
        old, new = self.saved_epochs, self.epochs
        self.saved_epochs = new
        if old == new or self.cfg.name not in LENGTH_DEPENDENT:
            return None
        if start >= old and new > old:  # the schedule had ended: a new stage
            last = self._lr_with_total(start - 1, old)
            if self.extend == "restart":
                self.stages.append({"start": start, "kind": "restart"})
                return (
                    f"train.epochs {old} -> {new}: epochs {start + 1}-{new} follow a new {self.cfg.name} "
                    f"schedule from optim.lr {self.base:.3g} (train.extend_schedule=restart; it ended at "
                    f"{last:.3g})"
                )
            self.stages.append({"start": start, "kind": "continue", "lr": last})
            return (
                f"train.epochs {old} -> {new}: epochs {start + 1}-{new} continue at the final learning rate "
                f"{last:.3g} (train.extend_schedule=continue; restart for a new {self.cfg.name} "
                "schedule)"
            )
        self.changes.append(
            {"at_epoch": start + 1, "epochs_from": old, "epochs_to": new, "why": "train.epochs changed"}
        )
        return (
            f"train.epochs {old} -> {new} before the schedule ended: the {self.cfg.name} schedule is "
            f"{'stretched' if new > old else 'shortened'} to end at epoch {new}"
        )

    def _lr_with_total(self, epoch: int, total: int) -> float:
        now, self.epochs = self.epochs, total
        try:
            return self.lr(epoch)
        finally:
            self.epochs = now

    def fit(self, epochs: int, at_epoch: int, why: dict[str, Any]) -> None:
        """Shorten the total (``train.fit_schedule_to_time_limit``) after epoch ``at_epoch`` (1-based)."""
        self.changes.append({"at_epoch": at_epoch, "epochs_from": self.epochs, "epochs_to": epochs, **why})
        self.epochs = self.saved_epochs = epochs

    def record(self) -> dict[str, Any]:
        """What history.json shows: the schedule, its total, each stage's epochs (1-based, inclusive) and
        learning rates, and any change of the total while it ran."""
        stages = []
        for i, st in enumerate(self.stages):
            end = self.stages[i + 1]["start"] if i + 1 < len(self.stages) else self.epochs
            rec = {
                "stage": i + 1,
                "kind": st["kind"],
                "first_epoch": st["start"] + 1,
                "last_epoch": end,
                "lr_first": self.lr(st["start"]),
                "lr_last": self.lr(max(st["start"], end - 1)),
            }
            stages.append(rec)
        return {"name": self.cfg.name, "epochs": self.epochs, "stages": stages, "changes": list(self.changes)}

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
        """Sets epoch ``epoch``'s learning rate on every group, times the group's ``lr_scale`` (default 1);
        returns the schedule's (unscaled) rate."""
        lr = self.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau_scale": self.plateau_scale,
            "best": self.best,
            "bad": self.bad,
            "epochs": self.epochs,
            "stages": [dict(s) for s in self.stages],
            "changes": [dict(c) for c in self.changes],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the plateau state and the stages; ``saved_epochs`` is the total the run was trained towards
        (checkpoints from before stages: the current total)."""
        self.plateau_scale, self.best, self.bad = state["plateau_scale"], state["best"], state["bad"]
        self.saved_epochs = int(state.get("epochs", self.epochs))
        self.stages = [dict(s) for s in state.get("stages", self.stages)]
        self.changes = [dict(c) for c in state.get("changes", [])]
