"""The Task protocol: the only task-facing type the engine knows.

A task owns everything that knows about classes, masks, fields or solvers: its datasets, its model, the
loss of one step (augmentation included), validation statistics, metrics, example images and checkpoint
metadata. The loop (``engine/loop.py``) owns everything else: seeding, schedules, precision, accumulation,
clipping, the divergence guard, history, checkpoints, early stopping, Ctrl-C, exact resume and DDP.

Statistics are additive tensors (a confusion matrix; sums of squared error and counts): the loop sums
them over batches and reduces them over ranks with one ``all_reduce`` per key, which makes DDP and exact
resume free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset


@dataclass
class StepOut:
    """One batch's result: the mean loss (a 0-d tensor; differentiable in training), the number of samples
    it averages over, and additive statistics (tensors summed over batches and ranks)."""

    loss: Tensor
    count: int
    stats: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """What the engine trains. ``monitor``/``mode`` are the defaults of ``train.monitor``/``train.mode``;
    ``metric_names`` are the keys ``metrics`` returns for validation (the loop adds ``loss``); a task whose
    training steps report fewer sets ``train_metric_names``."""

    name: str
    monitor: str
    mode: Literal["max", "min"]
    metric_names: tuple[str, ...]
    train_set: Dataset
    val_set: Dataset

    def build_model(self) -> nn.Module: ...

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator) -> StepOut: ...

    def validation_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOut: ...

    def metrics(self, stats: dict[str, Tensor]) -> dict[str, float]: ...

    def examples(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def checkpoint_meta(self) -> dict[str, Any]: ...

    def run_info(self, scored: list[int] | None = None) -> dict[str, Any]:
        """What the run's history.json records about its data; ``scored`` holds the indices of the validation
        items actually scored (``data.max_val_patches``), None when all are."""
        ...


def check_monitor(monitor: str, task: Task | type) -> None:
    """A monitor the task never records is a config error (exit 2) listing the valid names; ``task`` may be
    the class (its names are class attributes), so the check can run before any data is read."""
    from ssmseg.errors import ConfigError

    valid = monitor_names(task)
    if monitor not in valid:
        raise ConfigError(f"train.monitor: '{monitor}' is not a {task.name} metric; use one of {', '.join(valid)}")


def monitor_names(task: Task) -> list[str]:
    """Every name ``train.monitor`` may take for this task."""
    train = getattr(task, "train_metric_names", task.metric_names)  # what training steps report besides the loss
    return [f"val/{n}" for n in ("loss", *task.metric_names)] + [f"train/{n}" for n in ("loss", *train)]
