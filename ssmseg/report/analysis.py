"""Analyse what ``runs.py`` read, one kind at a time: a run here (summary, stages, findings, chance);
a cv folder, an evaluation and a sweep in their own modules (imported here so that one module names them all).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from ssmseg.report.chance import CHANCE_METRICS, chance_baselines, chance_note
from ssmseg.report.cv_analysis import analyse_cv
from ssmseg.report.eval_analysis import analyse_eval
from ssmseg.report.rules import Context, Curves, Finding
from ssmseg.report.run_rules import RUN_RULES, rule_at_chance
from ssmseg.report.runs import Run, cfg_get
from ssmseg.report.series import at
from ssmseg.report.stages import detect_stages
from ssmseg.report.sweep_analysis import analyse_sweep

__all__ = ["analyse_cv", "analyse_eval", "analyse_run", "analyse_sweep", "training_size"]


def _int(value: Any) -> int | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return int(value) if ok else None


def training_size(run: Run) -> dict[str, Any]:
    """Patches (or fields) and optimiser steps per epoch, and the validation items scored, from history.json's
    run block and config.yaml; None where they cannot be known. Per-epoch ``steps`` records win when present."""
    info, cfg = run.info, run.config
    items = _int(info.get("train_items"))
    cap = _int(cfg_get(cfg, "data.max_patches"))
    batch = _int(cfg_get(cfg, "data.batch_size"))
    accumulate = _int(cfg_get(cfg, "optim.accumulate")) or 1
    world = _int(info.get("world_size")) or 1
    patches = min(items, cap) if items is not None and cap is not None else items
    steps = None
    if patches is not None and batch:
        patches = math.ceil(patches / world) * world if world > 1 else patches  # equal steps on every rank
        steps = math.ceil(math.ceil(patches / world / batch) / accumulate)
    recorded = [r.get("steps") for r in run.records if _int(r.get("steps"))]
    if recorded:
        steps = int(np.median(recorded))
    n = len(run.records)
    total = sum(_int(r.get("steps")) or steps or 0 for r in run.records) if steps is not None else None
    val_items, val_total = _int(info.get("val_items")), _int(info.get("val_items_total"))
    return {
        "train_items": items,
        "patches_per_epoch": patches,
        "batch_size": batch,
        "accumulate": accumulate,
        "world_size": world,
        "steps_per_epoch": steps,
        "optimizer_steps": total if n else None,
        "val_items": val_items,
        "val_items_total": val_total,
        "max_val_patches": cfg_get(cfg, "data.max_val_patches"),
        "val_subset": val_items is not None and val_total is not None and val_items < val_total,
    }


def analyse_run(run: Run) -> dict[str, Any]:
    """Summary, stages, findings and chance baselines of one run (a dict ready for report.json)."""
    out: dict[str, Any] = {
        "kind": "run",
        "name": run.name,
        "path": str(run.path),
        "task": run.task,
        "format_version": run.format_version or 1,
        "monitor": run.monitor,
        "mode": run.mode,
        "missing": list(run.missing),
        "stages": [],
        "findings": [],
        "chance": None,
        "chance_lines": {},
        "schedule_changes": run.schedule_changes,
    }
    cur = Curves.of(run)
    out["curves"] = cur
    size = training_size(run)
    n = len(cur.epoch)
    if n == 0 or not run.monitor:
        out["summary"] = _summary(run, cur, None, size)
        if n and not run.monitor:
            out["missing"].append("no monitored metric named in history.json or config.yaml: nothing to analyse")
            out["findings"] = [asdict(_no_values(run, "history.json and config.yaml name no monitored metric"))]
        return out
    val = cur.get(run.monitor)
    if val is None or not np.isfinite(val).any():
        out["missing"].append(f"no finite {run.monitor} in any epoch record: stages and most findings need it")
        val = None
    best_idx, note = _best_index(run, cur, val)
    if note:
        out["missing"].append(note)
    out["summary"] = _summary(run, cur, best_idx, size)
    metric = run.monitor.split("/", 1)[-1]
    chance, why = chance_baselines(metric, run)
    out["chance"] = chance
    if why:
        out["missing"].append(why)
    elif chance and chance_note(chance):
        out["missing"].append(chance_note(chance))
    for m in CHANCE_METRICS:  # the lines drawn on every metric panel
        other, _ = chance_baselines(m, run)
        if other:
            out["chance_lines"][m] = max(other["majority_class"]["value"], other["class_prior_draw"]["value"])
    ctx = Context(run, cur, val, best_idx, metric, size)
    if val is not None:
        out["stages"] = detect_stages(ctx)
    findings = [f for rule in RUN_RULES if (f := rule(ctx)) is not None]
    if chance and val is not None:
        f = rule_at_chance(ctx, chance)
        if f:
            findings.append(f)
    if val is None:
        findings.insert(0, _no_values(run, f"{run.monitor} is NaN or missing in all {n} epochs"))
    for f in findings:
        f.source = run.name
    out["findings"] = [asdict(f) for f in findings]
    return out


def _no_values(run: Run, why: str) -> Finding:
    return Finding(
        "no_values",
        "warning",
        f"nothing can be judged: {why}; the rules need a finite monitored metric (check the run's log: it may "
        "have diverged from the first epoch, or its validation set may be empty).",
        {"epochs": len(run.records), "monitor": run.monitor, "stop_reason": run.stop_reason},
        run.name,
        refs=["summary"],
    )


def _best_index(run: Run, cur: Curves, val: np.ndarray | None) -> tuple[int | None, str | None]:
    if val is None:
        return None, None
    epochs = list(cur.epoch.astype(int))
    kept_last = run.select == "last"  # history's best is then the last epoch: the monitored best is the curve's
    if not kept_last and run.best["epoch"] in epochs and np.isfinite(val[epochs.index(run.best["epoch"])]):
        return epochs.index(run.best["epoch"]), None
    sign = 1.0 if run.mode != "min" else -1.0
    s = np.where(np.isfinite(val), sign * val, -np.inf)
    note = None if kept_last else "history.json's best epoch is missing or has no value: recomputed from the curve"
    return int(np.argmax(s)), note


def _summary(run: Run, cur: Curves, b: int | None, size: dict[str, Any]) -> dict[str, Any]:
    metric = (run.monitor or "").split("/", 1)[-1]
    val, train = cur.get(run.monitor), cur.get(f"train/{metric}")
    secs, vsecs = cur.get("seconds"), cur.get("val_seconds")
    sps, mem = cur.get("samples_per_s"), cur.get("peak_memory_mb")
    cfg, info = run.config, run.info
    train_s = float(np.nansum(secs)) if secs is not None and np.isfinite(secs).any() else math.nan
    val_s = float(np.nansum(vsecs)) if vsecs is not None and np.isfinite(vsecs).any() else math.nan
    return {
        "monitor": run.monitor,
        "mode": run.mode,
        "best_epoch": int(cur.epoch[b]) if b is not None else None,
        "best_value": at(val, b),
        "train_at_best": at(train, b),
        "gap_at_best": at(train, b) - at(val, b),
        "lr_at_best": at(cur.get("lr"), b),
        "final_value": at(val, len(cur.epoch) - 1) if len(cur.epoch) else math.nan,
        "select": run.select,
        "epochs_trained": len(cur.epoch),
        "epochs_planned": run.planned_epochs(),
        "stop_reason": run.stop_reason,
        "wall_seconds": np.nansum([train_s, val_s]) if np.isfinite([train_s, val_s]).any() else math.nan,
        "train_seconds": train_s,
        "val_seconds": val_s,
        "samples_per_s": float(np.nanmedian(sps)) if sps is not None and np.isfinite(sps).any() else math.nan,
        "peak_memory_mb": float(np.nanmax(mem)) if mem is not None and np.isfinite(mem).any() else math.nan,
        "parameters": info.get("parameters"),
        "model": info.get("model") or cfg_get(cfg, "model.name"),
        "scan_backend": info.get("scan_backend") or cfg_get(cfg, "runtime.scan_backend"),
        "device": info.get("device") or cfg_get(cfg, "runtime.device"),
        "world_size": info.get("world_size"),
        "precision": info.get("precision") or cfg_get(cfg, "runtime.precision"),
        "dataset": info.get("dataset"),
        "schedule": info.get("schedule") or cfg_get(cfg, "schedule.name"),
        "warmup_epochs": run.warmup_epochs(),
        "lr_peak_config": cfg_get(cfg, "optim.lr"),
        **size,
    }
