"""Run folders with known training shapes, written in the file formats the report reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

METRICS = ("oa", "miou", "mean_f1", "kappa")
CLASSES = ["water", "forest", "crop", "urban", "bare"]
COUNTS_VAL = [5000, 3000, 2000, 1000, 500]
COUNTS_TRAIN = [20000, 12000, 8000, 4000, 2000]


def cosine_lr(n: int, peak: float = 1e-3, warmup: int = 0, floor: float = 1e-6) -> np.ndarray:
    t = np.arange(1, n + 1, dtype=float)
    after = floor + 0.5 * (peak - floor) * (
        1 + np.cos(np.pi * np.clip(t - warmup - 1, 0, None) / max(1, n - warmup - 1))
    )
    return np.where(t <= warmup, peak * (0.1 + 0.9 * t / max(warmup, 1)), after)


def config(epochs: int, warmup: int = 0, monitor: str = "val/miou", mode: str = "max", **over: Any) -> dict[str, Any]:
    cfg = {
        "model": {"name": "ssmu_net", "dropout": 0.0},
        "optim": {"lr": 1e-3, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_epochs": warmup},
        "task": {"name": "segmentation"},
        "train": {"epochs": epochs, "monitor": monitor, "mode": mode},
        "runtime": {"device": "cpu", "seed": 0, "precision": "fp32"},
    }
    for dotted, value in over.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def history(
    val: np.ndarray,
    train: np.ndarray,
    lr: np.ndarray,
    *,
    monitor: str = "val/miou",
    mode: str = "max",
    warmup: int = 0,
    stop: str | None = "completed",
    grad_max: np.ndarray | None = None,
    counts_val: list[int] | None = None,
    val_loss: np.ndarray | None = None,
    train_loss: np.ndarray | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A format-2 history. ``val``/``train`` are the monitored metric; the other metrics follow it."""
    n = len(val)
    metric = monitor.split("/", 1)[1]
    val_loss = val_loss if val_loss is not None else 2.0 * (1 - val) + 0.1
    train_loss = train_loss if train_loss is not None else 2.0 * (1 - train) + 0.1
    grad_mean = 1.0 + 0.05 * np.sin(np.arange(n))
    grad_max = grad_max if grad_max is not None else grad_mean * 2.5
    records = []
    for i in range(n):
        rec: dict[str, Any] = {
            "epoch": i + 1,
            "lr": float(lr[i]),
            "train/loss": _f(train_loss[i]),
            "val/loss": _f(val_loss[i]),
        }
        for m in METRICS:
            if metric != "loss":
                offset = {"oa": 0.1, "miou": 0.0, "mean_f1": 0.05, "kappa": -0.05}[m]
                rec[f"train/{m}"] = _f(train[i] + offset if m != metric else train[i])
                rec[f"val/{m}"] = _f(val[i] + offset if m != metric else val[i])
        if metric == "loss":
            rec["train/loss"], rec["val/loss"] = _f(train[i]), _f(val[i])
            for m in METRICS:
                rec[f"train/{m}"] = rec[f"val/{m}"] = 0.5
        rec.update(
            {
                "seconds": 2.0,
                "val_seconds": 0.5,
                "samples_per_s": 400.0 + i % 3,
                "grad_norm_mean": float(grad_mean[i]),
                "grad_norm_max": _f(grad_max[i]),
                "peak_memory_mb": 812.5,
            }
        )
        records.append(rec)
    sign = 1 if mode == "max" else -1
    score = np.where(np.isfinite(val), sign * val, -np.inf)
    b = int(np.argmax(score))
    return {
        "format_version": 2,
        "task": "segmentation",
        "monitor": monitor,
        "mode": mode,
        "metric_names": list(METRICS),
        "best": {"value": float(val[b]), "epoch": b + 1},
        "stop_reason": stop,
        "run": {
            "model": "ssmu_net",
            "parameters": 123456,
            "device": "cpu",
            "scan_backend": "cpu",
            "world_size": 1,
            "precision": "fp32",
            "dataset": "synthetic",
            "epochs_planned": n,
            "warmup_epochs": warmup,
            "schedule": "cosine",
            "classes": CLASSES,
            "class_counts_train": COUNTS_TRAIN,
            "class_counts_val": counts_val or COUNTS_VAL,
            **(run or {}),
        },
        "epochs": records,
    }


def _f(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def write_run(folder: Path, hist: dict[str, Any] | None, cfg: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    if hist is not None:
        (folder / "history.json").write_text(json.dumps(hist, indent=1))
    return folder


# ---------------------------------------------------------------------------------------------- shapes


def _noise(n: int, scale: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, n)


def clean(n: int = 60, warmup: int = 3) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    val = 0.80 - 0.5 * np.exp(-t / 8) + _noise(n, 0.003)
    train = val + 0.03 + _noise(n, 0.003, 1)
    return history(val, train, cosine_lr(n, warmup=warmup), warmup=warmup)


def overfit(n: int = 60, k: int = 25) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    rise = 0.70 - 0.4 * np.exp(-t / 5)
    val = np.where(t <= k, rise, rise[k - 1] - 0.004 * (t - k)) + _noise(n, 0.002)
    train = 0.98 - 0.6 * np.exp(-t / 10)
    return history(val, train, cosine_lr(n))


def undertrained(n: int = 30) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    val = 0.2 + 0.5 * t / n + _noise(n, 0.003)
    return history(val, val + 0.02, cosine_lr(n, floor=5e-4))


def divergent(n: int = 40, at: int = 21) -> dict[str, Any]:
    h = clean(n, warmup=0)
    for rec in h["epochs"][at - 1 :]:
        for key in list(rec):
            if key.startswith(("train/", "val/")):
                rec[key] = None
        rec["grad_norm_max"] = None
    h["epochs"] = h["epochs"][: at + 1]
    vals = [r["val/miou"] if r["val/miou"] is not None else -1 for r in h["epochs"]]
    h["best"] = {"value": max(vals), "epoch": vals.index(max(vals)) + 1}
    h["stop_reason"] = "diverged"
    return h


def lr_too_early(n: int = 60, step: int = 8) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    val = np.where(
        t <= step, 0.2 + 0.3 * (1 - np.exp(-t / 3)), 0.2 + 0.3 * (1 - np.exp(-step / 3)) + 0.004 * (t - step)
    )
    val = val + _noise(n, 0.002)
    lr = np.where(t <= step, 1e-3, 1e-5)
    return history(val, val + 0.02, lr)


def at_chance(n: int = 30) -> dict[str, Any]:
    # Always predicting 'water' (5000 of 11500 validation pixels) gives an mIoU of 0.4348 / 5 = 0.0870.
    val = 0.085 + _noise(n, 0.002)
    return history(val, val + 0.003, cosine_lr(n))


def low_and_close(n: int = 40) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    val = 0.35 - 0.2 * np.exp(-t / 5) + _noise(n, 0.002)
    return history(val, val + 0.01, cosine_lr(n))


def grad_spike(n: int = 60, at: int = 30) -> dict[str, Any]:
    h = clean(n)
    h["epochs"][at - 1]["grad_norm_max"] = 40.0
    return h


def loss_overfit(n: int = 60, k: int = 25) -> dict[str, Any]:
    """Monitor val/loss (mode min): it falls until epoch k, then rises while train/loss keeps falling."""
    t = np.arange(1, n + 1, dtype=float)
    fall = 0.3 + 1.5 * np.exp(-t / 5)
    val = np.where(t <= k, fall, fall[k - 1] + 0.01 * (t - k)) + _noise(n, 0.002)
    train = 0.05 + 1.7 * np.exp(-t / 8)
    return history(val, train, cosine_lr(n), monitor="val/loss", mode="min")


def loss_clean(n: int = 60) -> dict[str, Any]:
    t = np.arange(1, n + 1, dtype=float)
    val = 0.3 + 1.5 * np.exp(-t / 8) + _noise(n, 0.002)
    return history(val, val - 0.02, cosine_lr(n), monitor="val/loss", mode="min")


# ---------------------------------------------------------------------------------------------- eval, sweep, cv


def seg_metrics(weak: bool = True) -> dict[str, Any]:
    """A segmentation metrics.json: 'bare' is weak (mostly taken for 'crop') when ``weak``."""
    cm = np.array(
        [
            [950, 20, 10, 10, 10],
            [30, 900, 50, 10, 10],
            [10, 40, 880, 40, 30],
            [5, 10, 30, 900, 55],
            [5, 5, 300, 20, 170 if weak else 670],
        ],
        dtype=float,
    )
    support, pred, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    iou = tp / (support + pred - tp)
    prec, rec = tp / pred, tp / support
    f1 = 2 * tp / (support + pred)
    per_class = {
        c: {"iou": iou[i], "precision": prec[i], "recall": rec[i], "f1": f1[i], "support": int(support[i])}
        for i, c in enumerate(CLASSES)
    }
    oa = tp.sum() / cm.sum()
    return {
        "oa": oa,
        "miou": iou.mean(),
        "mean_f1": f1.mean(),
        "kappa": 0.8,
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "protocol": {"split": "test", "classes": CLASSES},
        "chance": {
            "majority_class": {"class": "water", "oa": 0.2, "miou": 0.04, "mean_f1": 0.07, "kappa": 0.0},
            "class_prior_draw": {"oa": 0.2, "miou": 0.11, "mean_f1": 0.2, "kappa": 0.0},
            "priors_from": "training class counts",
        },
        "evaluated": {"run": "runs/x", "checkpoint": "best.pt", "model": "ssmu_net"},
    }


def recon_metrics() -> dict[str, Any]:
    return {
        "task": "reconstruction",
        "protocol": {"split": "test", "samples": 8},
        "per_fraction": [
            {
                "fraction": f,
                "psnr_unobserved": 20 + 10 * f,
                "ssim_unobserved": 0.5 + f / 2,
                "rmse_unobserved": 0.1 - f / 20,
                "psnr_mean_k": 22 + 10 * f,
            }
            for f in (0.05, 0.1, 0.3)
        ],
    }


def sweep(baseline_psnr: float = 24.0) -> dict[str, Any]:
    rows = []
    for solver, per in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        for steps in (1, 2, 4, 8, 16):
            nfe = steps * per
            psnr_mean = 30.0 - 0.05 * nfe / per
            rows.append(
                {
                    "solver": solver,
                    "steps": steps,
                    "nfe": nfe,
                    "seconds": 0.01 * nfe,
                    "psnr_sample": psnr_mean - 2.5,
                    "psnr_mean": psnr_mean,
                    "ssim_sample": 0.8,
                    "ssim_mean": 0.85,
                    "rmse_sample": 0.05,
                    "rmse_mean": 0.04,
                    "coverage90": 0.88,
                    "spread": 0.1,
                    "spectrum_error": 0.2,
                    "solver_error": 0.01 / nfe,
                }
            )
    return {
        "protocol": {"samples": 8},
        "rows": rows,
        "baselines": [
            {"name": "idw", "psnr": baseline_psnr, "ssim": 0.7, "rmse": 0.07, "seconds": 0.1},
            {"name": "kriging", "psnr": baseline_psnr - 1, "ssim": 0.68, "rmse": 0.08, "seconds": 0.5},
        ],
        "conclusions": ["euler at 1 step has the highest PSNR of the mean"],
    }


def write_cv(
    folder: Path,
    values: list[float],
    with_summary: bool = True,
    val_values: list[float] | None = None,
    pixels: int = 4096,
    **cfg: Any,
) -> Path:
    """A cv folder as cv writes it: fold_<k>/ runs and cv_summary.json whose heldout/miou are ``values`` (each
    fold's best.pt scored on the fold it held out) and val/miou ``val_values`` (what selected the epoch)."""
    folder.mkdir(parents=True)
    val_values = val_values or [v + 0.03 for v in values]
    folds = []
    for k, (v, sel) in enumerate(zip(values, val_values, strict=True)):
        h = clean(30, warmup=0)
        scale = sel / h["best"]["value"]
        for r in h["epochs"]:
            r["val/miou"] = r["val/miou"] * scale
        h["best"]["value"] = sel
        h["run"]["fold"] = k
        write_run(folder / f"fold_{k}", h, config(30, **cfg))
        rec = h["epochs"][h["best"]["epoch"] - 1]
        folds.append(
            {
                "fold": k,
                "best_epoch": h["best"]["epoch"],
                "monitor": "val/miou",
                "selected_on": "the val split outside the fold",
                "scored_on": f"held-out fold {k}",
                "heldout/miou": v,
                "heldout/oa": v + 0.1,
                "val/miou": sel,
                "val/oa": rec["val/oa"],
                "per_class_iou": {c: v - 0.05 * i for i, c in enumerate(CLASSES)},
                "heldout": {"items": 20, "pixels": pixels, "protocol": {}},
            }
        )
    if with_summary:
        keys = ("heldout/miou", "heldout/oa", "val/miou", "val/oa")
        arr = {k: np.array([f[k] for f in folds]) for k in keys}
        (folder / "cv_summary.json").write_text(
            json.dumps(
                {
                    "folds": folds,
                    "monitor": "val/miou",
                    "headline": "heldout/miou",
                    "metrics": list(keys),
                    "selected_on": "the val split outside the fold, never the fold itself",
                    "scored_on": "the held-out fold itself, once, with best.pt",
                    "mean": {k: float(a.mean()) for k, a in arr.items()},
                    "std": {k: float(a.std(ddof=1)) for k, a in arr.items()},
                    "note": "heldout/* are scores of each fold's best.pt on the fold it held out",
                }
            )
        )
    return folder


def reconstruction(n: int = 40) -> dict[str, Any]:
    """A reconstruction run monitoring val/psnr (max) with psnr, rmse (min-type) and ssim."""
    t = np.arange(1, n + 1, dtype=float)
    psnr = 30 - 10 * np.exp(-t / 6) + _noise(n, 0.05)
    h = history(psnr, psnr + 0.5, cosine_lr(n), monitor="val/psnr")
    for i, rec in enumerate(h["epochs"]):
        for key in [k for k in rec if k.split("/")[-1] in METRICS]:
            del rec[key]
        for split, p in (("train", psnr[i] + 0.5), ("val", psnr[i])):
            rec[f"{split}/psnr"], rec[f"{split}/rmse"], rec[f"{split}/ssim"] = p, 10 ** (-p / 20), p / 40
    h["task"], h["metric_names"] = "reconstruction", ["psnr", "rmse", "ssim"]
    for key in ("classes", "class_counts_train", "class_counts_val"):
        del h["run"][key]
    return h
