"""``ssmseg cv``: one run per fold of the prepared dataset, then every fold's metrics and mean +- std."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np

from ssmseg import outputs
from ssmseg.config import Config
from ssmseg.data import manifest as mf
from ssmseg.data.builtin import resolve_dataset
from ssmseg.errors import ConfigError, Interrupted
from ssmseg.experiments import guards
from ssmseg.experiments.train import default_run_dir, train


def fold_metrics(record: dict[str, Any], monitor: str) -> list[str]:
    """The validation metrics a fold reports, the monitored one first (whatever the task)."""
    return [monitor, *(k for k in record if k.startswith("val/") and k != monitor)]


def run_cv(cfg: Config, folds: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train fold_0..fold_{K-1} under one folder (completed folds are skipped) and write cv_summary."""
    k = folds or cfg.cv.folds
    dataset = resolve_dataset(cfg)
    prepared = mf.load(dataset)["split"]["folds"]
    if k > prepared:
        raise ConfigError(f"--folds {k} is more than the {prepared} folds '{dataset}' was prepared with; "
                          f"use at most {prepared} or prepare again with prep.split.folds={k}")  # fmt: skip
    guards.check_folds(dataset, k)  # every fold can train and validate, checked before the first one trains
    root = guards.cv_folder(default_run_dir(cfg), cfg, k)  # ours with this config (completed folds kept), or new
    rows = []
    for fold in range(k):
        fold_dir = root / f"fold_{fold}"
        done = fold_dir / "result.json"
        if done.is_file() and not force:
            rows.append(json.loads(done.read_text()))
            continue
        outputs.remove_own(fold_dir, "run")  # an unfinished fold (or --force) starts over; only what train wrote
        try:
            result = train(cfg, fold=fold, run_dir=fold_dir)
        except Interrupted:
            raise guards.cv_stopped(root, fold, k) from None
        except Exception:
            outputs.remove_if_empty(root)  # a cv folder that holds nothing yet is not left behind
            raise
        best_epoch = result.best["epoch"]
        rec = next(r for r in result.history if r["epoch"] == best_epoch)
        row = {"fold": fold, "best_epoch": best_epoch, **{m: rec[m] for m in fold_metrics(rec, result.monitor)}}
        done.write_text(json.dumps(row, indent=1))
        rows.append(row)
    metrics = [k for k in rows[0] if k not in ("fold", "best_epoch")]
    values = {m: np.array([r[m] for r in rows], dtype=np.float64) for m in metrics}
    summary = {"folds": rows, "monitor": metrics[0], "metrics": metrics,
               "mean": {m: float(v.mean()) for m, v in values.items()},
               "std": {m: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()}}  # fmt: skip
    (root / "cv_summary.json").write_text(json.dumps(summary, indent=1))
    with open(root / "cv_summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fold", "best_epoch", *metrics])
        for r in rows:
            writer.writerow([r["fold"], r["best_epoch"], *(f"{r[m]:.6f}" for m in metrics)])
        writer.writerow(["mean", "", *(f"{summary['mean'][m]:.6f}" for m in metrics)])
        writer.writerow(["std", "", *(f"{summary['std'][m]:.6f}" for m in metrics)])
    summary["run_dir"] = str(root)
    return summary
