"""A cross-validation folder: the held-out scores lead (each fold's best.pt scored once on the fold it held
out); the validation values at the best epoch are shown as what selected that epoch (optimistic)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from ssmseg.report.rules import THRESHOLDS, Finding
from ssmseg.report.runs import CV, number
from ssmseg.report.series import fmt, mean

SKIP = ("fold", "best_epoch", "format")


def headline_metric(cv: CV, keys: list[str]) -> str | None:
    """The metric that scores the folds: the summary's headline, else the held-out counterpart of the
    monitor, else any held-out metric, else the monitor (validation values: nothing was scored held-out)."""
    monitor = cv.monitor or ""
    for key in (cv.headline, monitor.replace("val/", "heldout/", 1), *(k for k in keys if k.startswith("heldout/"))):
        if key and key in keys:
            return key
    return monitor if monitor in keys else (keys[0] if keys else None)


def analyse_cv(cv: CV) -> dict[str, Any]:
    folds = cv.folds
    found = dict.fromkeys(
        k
        for f in folds
        for k, v in f.items()
        if k not in SKIP and isinstance(v, int | float) and not isinstance(v, bool)
    )
    keys = sorted(found, key=lambda k: (not k.startswith("heldout/"), not k.startswith("val/")))
    mean_, std, missing = dict(cv.mean), dict(cv.std), list(cv.missing)
    for k in keys:
        v = np.array([number(f.get(k)) for f in folds])
        v = v[np.isfinite(v)]
        if k not in mean_ and len(v):
            mean_[k] = float(v.mean())
            std[k] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    head = headline_metric(cv, keys)
    heldout = [k for k in keys if k.startswith("heldout/")]
    if not heldout and folds:
        missing.append(
            "no held-out scores (heldout/*) in the cv summary: every value is a validation metric of the data that "
            "selected the epoch (optimistic), not a score of the fold"
        )
    judged = heldout or keys  # the spread that matters is the held-out one
    findings = [f for k in judged if (f := _spread(cv, k, mean_.get(k, math.nan), std.get(k, math.nan)))]
    per_class: dict[str, list[float]] = {}
    for f in folds:
        if isinstance(f.get("per_class_iou"), dict):
            for name, v in f["per_class_iou"].items():
                per_class.setdefault(str(name), []).append(number(v))
    classes = [
        {"class": k, "mean_iou": mean(np.array(v)), "std_iou": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0}
        for k, v in per_class.items()
    ]
    selector = cv.monitor or "val/*"
    return {
        "kind": "cv",
        "name": cv.name,
        "path": str(cv.path),
        "monitor": cv.monitor,
        "selected_on": cv.selected_on,
        "select": cv.select,
        "scored_on": cv.scored_on,
        "note": cv.note,
        "headline": head,
        "selector": selector,
        "heldout": heldout,
        "metrics": keys,
        "folds": folds,
        "mean": mean_,
        "std": std,
        "per_class": classes,
        "missing": missing,
        "findings": [asdict(f) for f in findings],
    }


def _spread(cv: CV, k: str, m: float, s: float) -> Finding | None:
    vals = [(number(f.get(k)), f.get("fold")) for f in cv.folds if np.isfinite(number(f.get(k)))]
    if not (np.isfinite(m) and np.isfinite(s) and abs(m) > 1e-12 and len(vals) > 1):
        return None
    if s / abs(m) <= THRESHOLDS["cv_spread"]:
        return None
    lo, hi = min(vals, key=lambda x: x[0]), max(vals, key=lambda x: x[0])
    what = "held-out score" if k.startswith("heldout/") else "validation value (nothing was scored held-out)"
    return Finding(
        "cv_spread",
        "warning",
        f"{k} ({what}) varies a lot across folds: {fmt(m)} ± {fmt(s)} (the std is {s / abs(m):.0%} of the mean; "
        f"folds range from {fmt(lo[0])} (fold {lo[1]}) to {fmt(hi[0])} (fold {hi[1]})): the mean is an unstable "
        "estimate; compare the folds' class counts and use more or larger folds.",
        {
            "metric": k,
            "mean": m,
            "std": s,
            "ratio": s / abs(m),
            "min": lo,
            "max": hi,
            "threshold": THRESHOLDS["cv_spread"],
        },
        cv.name,
        refs=["folds", "fold_figure"],
    )
