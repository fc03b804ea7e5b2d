"""The training sections: ``optim``, ``schedule``, ``train``, ``loss``, ``augment``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ssmseg.config.sections.base import Section


class OptimConfig(Section):
    """The optimiser."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="Optimiser.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="Decoupled weight decay (not applied to norms and biases).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; empty: off.")
    accumulate: int = Field(1, ge=1, description="Micro-batches accumulated per optimiser step.")


class ScheduleConfig(Section):
    """Learning-rate schedule, stepped once per epoch after an optional linear warmup."""

    name: Literal["cosine", "cosine_restarts", "poly", "plateau", "constant"] = Field(
        "cosine", description="Schedule after warmup."
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        description="Epochs of linear warmup; a run shorter than this warms up for train.epochs - 1 epochs (with a "
        "warning), and its config.yaml records that.",
    )
    warmup_start_factor: float = Field(0.1, gt=0, le=1, description="Warmup starts at this fraction of `optim.lr`.")
    min_lr: float = Field(1e-6, ge=0, description="Floor of cosine and polynomial schedules.")
    t0: int = Field(10, ge=1, description="cosine_restarts: epochs of the first cycle (T_0).")
    t_mult: int = Field(1, ge=1, description="cosine_restarts: cycle length multiplier (T_mult).")
    power: float = Field(0.9, gt=0, description="poly: exponent.")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="plateau: factor applied to the lr.")
    plateau_patience: int = Field(5, ge=0, description="plateau: epochs without improvement before a cut.")


class TrainConfig(Section):
    """The training loop."""

    epochs: int = Field(50, ge=1, description="Number of epochs.")
    monitor: str | None = Field(
        None,
        description="Metric for best.pt and early stopping, e.g. val/miou; empty: the task's own "
        "(segmentation val/miou, reconstruction val/psnr). Checked against the task's metrics before training.",
    )
    mode: Literal["max", "min"] | None = Field(
        None, description="Whether the monitored metric should go up or down; empty: the task's own."
    )
    patience: int | None = Field(None, ge=1, description="Early-stopping patience in epochs; empty: off.")
    min_delta: float = Field(
        0.0,
        ge=0,
        description="Smallest change of the monitored metric that counts as an improvement, for best.pt (the "
        "epoch cv and eval use) and for early stopping: a later epoch replaces the best one only if it beats it by "
        "more than this, so selection keeps the earlier (simpler) model unless a later one is better by more than "
        "validation noise. 0: any improvement. history.json records it.",
    )
    select: Literal["best", "last"] = Field(
        "best",
        description="Which epoch best.pt keeps (the checkpoint cv scores and eval uses): best: the best val value of "
        "train.monitor; last: the last epoch that ran, chosen on nothing (for val splits of a few hundred pixels, "
        "where the best of many noisy epochs is mostly the noise: docs/experiment_log.md, 2026-12-06). "
        "history.json records it.",
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Exponential moving average of the weights: its decay per optimiser step (e.g. 0.99: about the "
        "last 100 steps; bias-corrected, so the initial weights never count). Validation, best.pt and every "
        "checkpoint's model (what eval, cv, export and --init use) are the average; training goes on with the "
        "optimiser's weights, which the checkpoints also keep for --resume. Empty: off.",
    )
    save_interval: int = Field(1, ge=1, description="Write latest.pt every this many epochs.")
    time_limit: float | None = Field(
        None,
        gt=0,
        description="Minutes of training for this command (from the first epoch): the run stops at the first epoch "
        "boundary past it, keeps best.pt and latest.pt, and history.json says stop_reason: time_limit; "
        "--resume continues it (with a new budget). Empty: no limit.",
    )
    fit_schedule_to_time_limit: bool = Field(
        False,
        description="With train.time_limit and a cosine or poly schedule: after the first epoch (SSMU-Net: the first "
        "after model.linear_epochs, whose spectral-only epochs are faster), lower train.epochs to the epochs that "
        "fit in the limit at that epoch's pace, so the schedule ends instead of being cut; config.yaml and "
        "history.json record the fitted count.",
    )
    extend_schedule: Literal["continue", "restart"] = Field(
        "continue",
        description="A finished cosine or poly run resumed with a larger train.epochs: continue: the added epochs "
        "keep the final learning rate; restart: they follow `schedule` anew (warmup, then the decay from "
        "optim.lr) over the added epochs. history.json's schedule record lists each stage.",
    )


class LossConfig(Section):
    """The loss: segmentation losses by name; reconstruction trains by flow matching (`tv_weight` applies)."""

    name: Literal["ce", "dice", "ce_dice", "focal"] = Field("ce_dice", description="Loss function.")
    dice_weight: float = Field(1.0, ge=0, description="ce_dice: weight of the Dice term.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    focal_gamma: float = Field(2.0, ge=0, description="focal: focusing exponent.")
    class_weights: Literal["auto"] | list[float] | None = Field(
        None, description="Cross-entropy class weights: a list, `auto` (from class counts), or empty."
    )
    tv_weight: float = Field(
        0.0, ge=0, description="Reconstruction: total-variation penalty on the one-step clean estimate; 0: off."
    )


class AugmentConfig(Section):
    """Batched augmentation on the model's device, valid for any number of bands."""

    flips: bool = Field(True, description="Random horizontal and vertical flips.")
    rot90: bool = Field(True, description="Random 90-degree rotations.")
    scale_jitter: float = Field(0.0, ge=0, lt=1, description="Random zoom of ±this fraction; 0: off.")
    brightness: float = Field(0.0, ge=0, description="Per-band additive jitter of ±this (normalised units).")
    contrast: float = Field(0.0, ge=0, lt=1, description="Per-band multiplicative jitter of ±this fraction.")
    noise_std: float = Field(0.0, ge=0, description="Gaussian noise standard deviation (normalised units).")
