"""``--vs``: a run against a previous run, or a cv folder against a previous cv folder: the config keys that
differ, the headline numbers side by side (per fold, held-out, for cv), and a warning when the two were
validated or scored on different pixels (their numbers are then not comparable as they stand)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from ssmseg.report.rules import Finding
from ssmseg.report.runs import CV, Run, cfg_get, number
from ssmseg.report.series import fmt

HEADLINE = (
    ("best_value", "best {monitor}"),
    ("best_epoch", "best epoch"),
    ("train_at_best", "{train} at best"),
    ("gap_at_best", "train − val at best"),
    ("lr_at_best", "LR at best"),
    ("final_value", "last {monitor}"),
    ("epochs_trained", "epochs trained"),
    ("steps_per_epoch", "optimiser steps per epoch"),
    ("optimizer_steps", "optimiser steps"),
    ("val_items", "validation items scored"),
    ("wall_seconds", "wall time (s)"),
    ("samples_per_s", "samples/s"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("parameters", "parameters"),
)
SAME_METRIC_ONLY = ("best_value", "train_at_best", "gap_at_best", "final_value")
# What decides which pixels a run was validated on (run block of history.json, or config.yaml).
VALIDATION_KEYS = (
    ("config", "data.max_val_patches"),
    ("info", "val_items"),
    ("info", "val_items_total"),
    ("info", "dataset"),
    ("info", "fold"),
    ("info", "class_counts_val"),
    ("info", "class_counts_val_scored"),
)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def config_diff(previous: dict[str, Any] | None, current: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if previous is None or current is None:
        return None
    a, b = flatten(previous), flatten(current)
    return [
        {"key": k, "previous": a.get(k, "(absent)"), "current": b.get(k, "(absent)")}
        for k in sorted(set(a) | set(b))
        if a.get(k, "(absent)") != b.get(k, "(absent)")
    ]


def validation_differences(previous: Run, current: Run) -> list[dict[str, Any]]:
    """The keys deciding the validated pixels that differ (only where both runs record them)."""
    out = []
    for where, key in VALIDATION_KEYS:
        get = (lambda r, k=key: cfg_get(r.config, k)) if where == "config" else (lambda r, k=key: r.info.get(k))
        p, c = get(previous), get(current)
        if where == "info" and (p is None or c is None):
            continue
        if p != c:
            out.append({"key": key if where == "config" else f"run.{key}", "previous": p, "current": c})
    return out


def _different_pixels(diffs: list[dict[str, Any]], source: str, what: str) -> Finding:
    listed = "; ".join(f"{d['key']} {_short(d['previous'])} -> {_short(d['current'])}" for d in diffs[:4])
    return Finding(
        "different_validation",
        "warning",
        f"{what} on different pixels ({listed}): their metric values are not comparable as they stand; "
        "validate both on the same pixels (the same dataset, fold and data.max_val_patches) or compare an eval "
        "of each on the same test split.",
        {"differences": diffs},
        source,
        refs=["headline", "config_diff"],
    )


def _short(v: Any) -> str:
    text = fmt(v) if isinstance(v, int | float) else str(v)
    return text if len(text) <= 40 else "..." + text[-37:]  # paths differ at their ends


def _row(key: str, label: str, p: float, c: float) -> dict[str, Any]:
    change = c - p
    rel = change / abs(p) if np.isfinite(p) and p != 0 else math.nan
    return {"key": key, "label": label, "previous": p, "current": c, "change": change, "relative": rel}


def compare(current: Run, cur: dict[str, Any], previous: Run, prev: dict[str, Any]) -> dict[str, Any]:
    """Config keys that differ, the headline numbers side by side with absolute and relative change, and a
    finding when the runs were validated on different pixels."""
    notes = []
    diff = config_diff(previous.config, current.config)
    if diff is None:
        notes.append("config differences need config.yaml in both runs")
    same_metric = current.monitor == previous.monitor
    if not same_metric:
        notes.append(
            f"the runs monitor different metrics ({previous.monitor} and {current.monitor}): their "
            "metric values are not compared"
        )
    train = "train/" + str(current.monitor).split("/", 1)[-1]
    rows = [
        _row(
            key,
            label.format(monitor=current.monitor, train=train),
            number(prev["summary"].get(key)),
            number(cur["summary"].get(key)),
        )
        for key, label in HEADLINE
        if same_metric or key not in SAME_METRIC_ONLY
    ]
    source = f"{current.name} vs {previous.name}"
    findings = []
    pixels = validation_differences(previous, current)
    if pixels:
        findings.append(_different_pixels(pixels, source, "the two runs were validated"))
    return {
        "kind": "run",
        "current": cur.get("label", current.name),
        "previous": previous.name,
        "previous_path": str(previous.path),
        "config_diff": diff or [],
        "headline": rows,
        "notes": notes,
        "findings": [asdict(f) for f in findings],
    }


def compare_cv(current: CV, cur: dict[str, Any], previous: CV, prev: dict[str, Any]) -> dict[str, Any]:
    """Two cv folders: the folds' config diff, mean ± std of each shared metric, and fold by fold the
    held-out score of each and their difference (the paired comparison that cancels the folds' difficulty)."""
    notes = []
    diff = config_diff(previous.config, current.config)
    if diff is None:
        notes.append("config differences need config.yaml in a fold of each cv folder")
    head = cur["headline"]
    if head != prev["headline"]:
        notes.append(f"the cv folders lead with different metrics ({prev['headline']} and {head})")
    shared = [k for k in cur["metrics"] if k in prev["metrics"]]
    rows = [_row(k, f"mean {k}", number(prev["mean"].get(k)), number(cur["mean"].get(k))) for k in shared]
    by_fold_prev = {f.get("fold"): f for f in prev["folds"]}
    per_fold, diffs, pixel_diffs = [], [], []
    for f in cur["folds"]:
        p = by_fold_prev.get(f.get("fold"))
        if p is None:
            continue
        a, b = number(p.get(head)), number(f.get(head))
        epochs = {"best_epoch_previous": p.get("best_epoch"), "best_epoch_current": f.get("best_epoch")}
        per_fold.append({"fold": f.get("fold"), "previous": a, "current": b, "change": b - a, **epochs})
        if np.isfinite(b - a):
            diffs.append(b - a)
        pa, pb = _pixels(p), _pixels(f)
        if pa is not None and pb is not None and pa != pb:
            pixel_diffs.append({"key": f"fold {f.get('fold')} held-out pixels", "previous": pa, "current": pb})
    missing = sorted(set(by_fold_prev) ^ {f.get("fold") for f in cur["folds"]}, key=str)
    if missing:
        notes.append(f"folds {', '.join(map(str, missing))} are in only one of the cv folders: not compared")
    paired = None
    if diffs:
        d = np.array(diffs)
        sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
        paired = {
            "metric": head,
            "mean_change": float(d.mean()),
            "std_change": sd,
            "folds": len(d),
            "higher": int((d > 0).sum()),
            "lower": int((d < 0).sum()),
        }
    source = f"{current.name} vs {previous.name}"
    findings = []
    run_pairs = [(a, b) for a in current.fold_runs for b in previous.fold_runs if a.name == b.name]
    for a, b in run_pairs[:1]:  # the folds share their settings: fold 0 speaks for all
        pixel_diffs += [d for d in validation_differences(b, a) if d["key"] not in ("run.fold",)]
    if pixel_diffs:
        findings.append(_different_pixels(pixel_diffs, source, "the two cv folders were validated or scored"))
    return {
        "kind": "cv",
        "current": current.name,
        "previous": previous.name,
        "previous_path": str(previous.path),
        "config_diff": diff or [],
        "headline": rows,
        "per_fold": per_fold,
        "paired": paired,
        "metric": head,
        "notes": notes,
        "findings": [asdict(f) for f in findings],
    }


def _pixels(fold: dict[str, Any]) -> Any:
    scored = fold.get("heldout")
    return scored.get("pixels") if isinstance(scored, dict) else None
