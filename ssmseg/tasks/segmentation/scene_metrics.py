"""Per-scene metrics of a multi-scene eval: ``metrics_per_scene.csv`` and the ``per_scene`` rows of metrics.json,
the model's and, with ``eval.baselines``, each baseline's on the same pixels of the scene."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg.tasks.segmentation.metrics import metrics_from_confusion

PICK = ("oa", "miou", "mean_f1", "kappa")


def write_per_scene(out: Path, done: list[dict[str, Any]], state, protocol) -> list[dict[str, Any]]:
    """``metrics_per_scene.csv``: one row per scene (its own confusion matrix), beside the pooled metrics."""
    classes, rows = state["classes"], []
    for d in done:
        m = metrics_from_confusion(d["confusion"], classes, protocol["exclude_classes"])
        rows.append(
            {
                "scene": d["scene"],
                "input": d["input"],
                "mask": d["mask"],
                "pixels": int(d["confusion"].sum()),
                **{k: m[k] for k in PICK},
                "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items()},
                "confusion_matrix": d["confusion"].astype(int).tolist(),
            }
        )
        if "baselines" in d:  # on the same pixels of the scene
            rows[-1]["baselines"] = {name: scene_scores(bcm, classes, protocol) for name, bcm in d["baselines"].items()}
    methods = list(rows[0].get("baselines", {})) if rows else []
    with open(out / "metrics_per_scene.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "scene",
                "input",
                "mask",
                "pixels",
                *PICK,
                *(f"iou/{c}" for c in classes),
                *(f"{m}/{k}" for m in methods for k in ("oa", "miou")),
            ]
        )
        for r in rows:
            iou = r["per_class_iou"]
            w.writerow(
                [
                    r["scene"],
                    r["input"],
                    r["mask"],
                    r["pixels"],
                    *(r[k] for k in PICK),
                    *("" if iou[c] is None else iou[c] for c in classes),
                    *(r["baselines"][m][k] for m in methods for k in ("oa", "miou")),
                ]
            )
    return rows


def scene_scores(cm: np.ndarray, classes: list[str], protocol: dict[str, Any]) -> dict[str, Any]:
    """One baseline on one scene: OA, mIoU, mean F1, kappa and its confusion matrix."""
    m = metrics_from_confusion(cm, classes, protocol["exclude_classes"])
    return {**{k: m[k] for k in PICK}, "confusion_matrix": cm.astype(int).tolist()}
