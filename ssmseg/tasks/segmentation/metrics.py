"""Segmentation metrics from one confusion matrix (rows: truth, columns: prediction), ignore index
excluded. The same code serves training, validation and ``eval``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts over pixels whose target is not ignored."""
    keep = target != ignore_index
    idx = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(
    cm: np.ndarray | torch.Tensor, classes: list[str] | None = None, exclude: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """OA, mIoU, mean F1, kappa (macro over classes present in truth or prediction, less the ``exclude``
    class names: they stay in OA, kappa and the per-class rows), and per class IoU, precision, recall, F1
    and support."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (support + predicted - tp)
        precision = tp / predicted
        recall = tp / support
        f1 = 2 * tp / (support + predicted)
    names = classes or [str(i) for i in range(len(cm))]
    present = ((support + predicted) > 0) & np.array([n not in exclude for n in names], dtype=bool)
    oa = tp.sum() / total if total else 0.0
    expected = (support * predicted).sum() / total**2 if total else 0.0
    kappa = (oa - expected) / (1 - expected) if total and expected < 1 else 0.0
    per_class = {
        name: {
            "iou": _f(iou[i]),
            "precision": _f(precision[i]),
            "recall": _f(recall[i]),
            "f1": _f(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "oa": float(oa),
        "miou": float(np.nanmean(np.where(present, iou, np.nan))) if present.any() else 0.0,
        "mean_f1": float(np.nanmean(np.where(present, f1, np.nan))) if present.any() else 0.0,
        "kappa": float(kappa),
        "per_class": per_class,
    }


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def boundary_band(truth: np.ndarray, radius: int, ignore_index: int) -> np.ndarray:
    """Pixels of ``truth`` (..., H, W) within ``radius`` pixels (Euclidean) of a pixel of another labelled
    class: the band an eroded-boundary evaluation leaves out. Ignored pixels and the array's edge are no
    boundary; ``radius`` 0 marks nothing."""
    truth = np.asarray(truth)
    band = np.zeros(truth.shape, dtype=bool)
    if radius <= 0:
        return band
    h, w = truth.shape[-2:]
    pad = [(0, 0)] * (truth.ndim - 2) + [(radius, radius), (radius, radius)]
    padded = np.pad(truth, pad, constant_values=ignore_index)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy, dx) == (0, 0) or dy * dy + dx * dx > radius * radius:
                continue
            other = padded[..., radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            band |= (other != truth) & (other != ignore_index)
    return band & (truth != ignore_index)
