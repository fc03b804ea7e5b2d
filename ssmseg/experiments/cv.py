"""``ssmseg cv``: one run per fold of the prepared dataset, each scored once on the fold it held out.

The protocol (the same for every task; the parts are ``data.datasets.select``): fold k trains on the
``train`` split outside fold k; early stopping and the best epoch (``best.pt``) are chosen on the ``val``
split outside fold k (prep drew it once, spatially separate and buffered from every training window);
fold k itself is never seen until ``best.pt`` is scored on it, once, by the task (``TaskLife.score_heldout``;
segmentation: the eval protocol, with the fold's own normalisation). A task without a held-out score
reports its validation metrics, and the summary says that no fold was scored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg import outputs, progress
from ssmseg.config import Config
from ssmseg.data import manifest as mf
from ssmseg.data.builtin import resolve_dataset
from ssmseg.data.datasets import describe_part, describe_selection
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import ConfigError, Interrupted
from ssmseg.experiments.folders import cv_folder
from ssmseg.experiments.train import RunResult, cap_warmup, check_config, default_run_dir, train
from ssmseg.tasks import task_life
from ssmseg.tasks.life import TaskLife

ROW_FORMAT = 2  # fold rows of an older protocol (best epoch chosen on the fold itself) are trained again
SELECTED_ON = "the val split outside the fold (prep's val blocks of the other folds), never the fold itself"
TRAINED_ON = "the train split outside the fold"
SCORED_ON = "the held-out fold itself, once, with best.pt"


def fold_metrics(record: dict[str, Any], monitor: str) -> list[str]:
    """The validation metrics a fold reports, the monitored one first (whatever the task)."""
    return [monitor, *(k for k in record if k.startswith("val/") and k != monitor)]


def _done(path: Path) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("format") == ROW_FORMAT else None


def run_cv(cfg: Config, folds: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train fold_0..fold_{K-1} under one folder (completed folds are skipped), score each on its held-out
    fold, and write cv_summary."""
    k = folds or cfg.cv.folds
    life = task_life(cfg.task.name)
    dataset = resolve_dataset(cfg, life.builtin_dataset)
    prepared = mf.load(dataset)["split"]["folds"]
    if k > prepared:
        raise ConfigError(
            f"--folds {k} is more than the {prepared} folds '{dataset}' was prepared with; "
            f"use at most {prepared} or prepare again with prep.split.folds={k}"
        )
    check_config(cfg)
    cfg = cap_warmup(cfg)
    if cfg.cv.baselines:
        life.check_baselines("cv.baselines")  # refused before the first fold trains
    gaps = life.check_folds(dataset, k)  # every fold can train, validate and be scored, checked before the first one
    root = cv_folder(default_run_dir(cfg), cfg, k)  # ours with this config (completed folds kept), or new
    rows = []
    for fold in range(k):
        fold_dir = root / f"fold_{fold}"
        done = fold_dir / "result.json"
        row = None if force else _done(done)
        if row is not None:
            rows.append(row)
            continue
        outputs.remove_own(fold_dir, "run")  # an unfinished fold (or --force) starts over; only what train wrote
        for line in gaps[fold]:  # a held-out class no training pixel outside the fold can teach
            progress.warn(line)
        try:
            with progress.scope(f"fold_{fold} ({fold + 1}/{k})"):  # named as its folder and the final table
                result = train(cfg, fold=fold, run_dir=fold_dir)
            row = fold_row(cfg, result, dataset, fold, life)
            if gaps[fold]:
                row["warnings"] = gaps[fold]
            if cfg.cv.baselines:  # same training part, same held-out pixels, scored as the model
                row["baselines"] = life.baselines(cfg, dataset, fold)
        except KeyboardInterrupt:  # in training or scoring: the fold starts over next time
            raise cv_stopped(root, fold, k) from None
        except Exception:
            outputs.remove_if_empty(root)  # a cv folder that holds nothing yet is not left behind
            raise
        done.write_text(json.dumps(row, indent=1))
        rows.append(row)
    summary = summarise(rows, rows[0]["monitor"], life.scores_heldout, cfg.task.name, cfg.train.select)
    write_summary(root, summary)
    summary["run_dir"] = str(root)
    return summary


def cv_stopped(root: Path, fold: int, k: int) -> Interrupted:
    return Interrupted(
        f"cross-validation '{root}' stopped in fold {fold} of {k} (folds before it are kept); continue with the "
        f"same command and --set runtime.name={root.name}"
    )


def fold_row(cfg: Config, result: RunResult, dataset: Path, fold: int, life: TaskLife) -> dict[str, Any]:
    """One fold: the epoch the val split outside the fold chose, its validation metrics there, and (when the
    task scores held-out folds) the held-out fold's metrics of that checkpoint."""
    best_epoch = result.best["epoch"]
    rec = next(r for r in result.history if r["epoch"] == best_epoch)
    val = {m: rec[m] for m in fold_metrics(rec, result.monitor)}
    row: dict[str, Any] = {
        "format": ROW_FORMAT,
        "fold": fold,
        "best_epoch": best_epoch,
        "monitor": result.monitor,
        "selected_on": describe_selection(cfg.train.select, fold),
        "trained_on": describe_part("train", fold),
    }
    if not life.scores_heldout:
        return {**row, "scored_on": None, **val}
    state = ckpt.load(result.run_dir / "checkpoints" / "best.pt")
    if state.get("epoch") is not None and int(state["epoch"]) + 1 != best_epoch:
        raise RuntimeError(
            f"internal error: best.pt of fold {fold} is epoch {int(state['epoch']) + 1}, history says {best_epoch}"
        )
    rt = setup_runtime(cfg.runtime)
    try:
        scored = life.score_heldout(cfg, state, dataset, fold, rt.device)
    finally:
        shutdown(rt)
    lead = result.monitor.replace("val/", "", 1)  # the monitored metric's held-out counterpart comes first
    heldout = {f"heldout/{m}": scored["metrics"][m] for m in sorted(scored["metrics"], key=lambda m: m != lead)}
    return {
        **row,
        "scored_on": scored["scored_on"],
        **heldout,
        **val,
        "per_class_iou": scored["per_class_iou"],
        "heldout": {
            "items": scored["items"],
            "pixels": scored["pixels"],
            "confusion_matrix": scored["confusion_matrix"],
            "protocol": scored["protocol"],
        },
    }


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarise(
    rows: list[dict[str, Any]], monitor: str, scored: bool, task: str, select: str = "best"
) -> dict[str, Any]:
    """cv_summary: every fold, mean and std of every metric (held-out first) and of the per-class IoU, and what
    selected the checkpoints and what was scored."""
    heldout = [m for m in rows[0] if m.startswith("heldout/")]
    first = monitor.replace("val/", "heldout/", 1)  # the held-out counterpart of the monitored metric leads
    heldout = sorted(heldout, key=lambda m: m != first)
    metrics = heldout + [m for m in rows[0] if m.startswith("val/")]
    summary: dict[str, Any] = {
        "folds": [{k: v for k, v in r.items() if k != "format"} for r in rows],  # format: result.json's only
        "monitor": monitor,
        "headline": metrics[0],
        "metrics": metrics,
        "select": select,
        "selected_on": SELECTED_ON if select == "best" else describe_selection(select, None),
        "trained_on": TRAINED_ON,
        "scored_on": SCORED_ON if scored else None,
        "mean": {},
        "std": {},
    }
    if all("baselines" in r for r in rows):  # classical baselines on the same held-out pixels, fold by fold
        names = list(rows[0]["baselines"]["methods"])
        summary["baselines"] = {
            name: {
                key: dict(
                    zip(("mean", "std"), _stats([r["baselines"]["methods"][name][key] for r in rows]), strict=True)
                )
                for key in ("oa", "miou")
            }
            for name in names
        }
    for m in metrics:
        summary["mean"][m], summary["std"][m] = _stats([r.get(m) for r in rows])
    if scored:
        classes = list(rows[0]["per_class_iou"])
        pc = {c: _stats([r["per_class_iou"].get(c) for r in rows]) for c in classes}
        summary["per_class_iou"] = {"mean": {c: v[0] for c, v in pc.items()}, "std": {c: v[1] for c, v in pc.items()}}
        summary["protocol"] = rows[0]["heldout"]["protocol"]
        summary["note"] = (
            "heldout/* are scores of each fold's best.pt on the fold it held out (never used to "
            "train or select); "
            + (
                "val/* are the val split's values at the best epoch, which they selected (optimistic)"
                if select == "best"
                else "val/* are the val split's values at the last epoch (train.select: last; nothing selected)"
            )
        )
    else:
        summary["note"] = (
            f"no held-out scorer for task {task}: every value is a validation metric of the val split "
            "outside the fold (the data that selected the epoch), not a score of the fold"
        )
    return summary


def write_summary(root: Path, summary: dict[str, Any]) -> None:
    (root / "cv_summary.json").write_text(json.dumps(summary, indent=1))
    metrics, rows = summary["metrics"], summary["folds"]
    classes = list((summary.get("per_class_iou") or {}).get("mean", {}))

    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.6f}"

    with open(root / "cv_summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fold", "best_epoch", *metrics, *(f"iou/{c}" for c in classes), "selected_on", "scored_on"])
        for r in rows:
            writer.writerow(
                [
                    r["fold"],
                    r["best_epoch"],
                    *(cell(r.get(m)) for m in metrics),
                    *(cell(r["per_class_iou"].get(c)) for c in classes),
                    r["selected_on"],
                    r.get("scored_on") or "not scored (validation metrics)",
                ]
            )
        for stat in ("mean", "std"):
            pcs = summary.get("per_class_iou", {}).get(stat, {})
            writer.writerow(
                [stat, "", *(cell(summary[stat][m]) for m in metrics), *(cell(pcs.get(c)) for c in classes), "", ""]
            )
