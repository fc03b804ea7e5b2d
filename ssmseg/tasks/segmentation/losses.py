"""Segmentation losses: cross-entropy, soft Dice over the classes present, their sum, and focal loss."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ssmseg.config.schema import LossConfig

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the target (ignored pixels excluded)."""
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probs = logits.float().softmax(1) * valid.unsqueeze(1)
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2).float() * valid.unsqueeze(1)
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    if not present.any():
        return logits.sum() * 0.0
    dice = (2 * inter + 1e-6) / (denom + 1e-6)
    return 1 - dice[present].mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, gamma: float, weight) -> torch.Tensor:
    """Per-pixel (1 - p_t)^gamma x cross-entropy, averaged over valid pixels."""
    ce = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    pt = torch.exp(-F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none"))
    loss = (1 - pt) ** gamma * ce
    return loss[valid].mean() if valid.any() else loss.sum() * 0.0


def class_weights_from_counts(counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over classes that occur; 0 for classes absent from training."""
    c = np.asarray(counts, dtype=np.float64)
    w = np.where(c > 0, c.sum() / np.maximum(c, 1) / max((c > 0).sum(), 1), 0.0)
    w = w / w[c > 0].mean() if (c > 0).any() else w
    return torch.tensor(w, dtype=torch.float32)


def build_loss(cfg: LossConfig, ignore_index: int, weight: torch.Tensor | None = None) -> Loss:
    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # The mean written as sum / labelled weight: a batch without a labelled pixel gives 0, not the NaN of
        # torch's mean (which the divergence guard would report as a diverged run).
        w = None if weight is None else weight.to(logits.device)
        total = F.cross_entropy(
            logits.float(),
            target,
            weight=w,
            ignore_index=ignore_index,
            label_smoothing=cfg.label_smoothing,
            reduction="sum",
        )
        valid = target != ignore_index
        count = valid.sum() if w is None else w[target.masked_fill(~valid, 0)][valid].sum()
        return total / count.clamp_min(1e-12)

    if cfg.name == "ce":
        return ce
    if cfg.name == "dice":
        return lambda logits, target: dice_loss(logits, target, ignore_index)
    if cfg.name == "ce_dice":
        return lambda logits, target: ce(logits, target) + cfg.dice_weight * dice_loss(logits, target, ignore_index)
    return lambda logits, target: focal_loss(
        logits, target, ignore_index, cfg.focal_gamma, None if weight is None else weight.to(logits.device)
    )
