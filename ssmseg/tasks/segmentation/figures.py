"""Figures written by ``eval``: prediction panels with a legend and the confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_panel(
    path: Path,
    rgb: np.ndarray,
    truth: np.ndarray | None,
    pred: np.ndarray,
    classes: list[str],
    palette: list[str],
    ignore_index: int,
    title: str = "",
) -> None:
    """rgb (H, W, 3) uint8; truth/pred (H, W) class indices. Input, truth (if any) and prediction side by side."""
    from matplotlib.patches import Patch

    plt = _plt()
    colours = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in palette] + [[0, 0, 0]], np.uint8)

    def paint(labels: np.ndarray) -> np.ndarray:
        idx = np.where(labels == ignore_index, len(palette), np.minimum(labels, len(palette)))
        return colours[idx]

    views = (
        [("input", rgb)]
        + ([("ground truth", paint(truth))] if truth is not None else [])
        + [("prediction", paint(pred))]
    )
    fig, axes = plt.subplots(1, len(views), figsize=(4 * len(views), 4.6), squeeze=False)
    for ax, (name, img) in zip(axes[0], views, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    handles = [Patch(color=c, label=n) for n, c in zip(classes, palette, strict=False)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_confusion(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    """Row-normalised confusion matrix (recall per true class) with counts."""
    plt = _plt()
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.7 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
