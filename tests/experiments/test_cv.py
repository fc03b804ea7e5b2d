"""ssmseg cv: one run per fold, a summary with mean and std, completed folds skipped, too many folds refused."""

from __future__ import annotations

import csv
import json

import pytest

from ssmseg.config import build_config
from ssmseg.errors import ConfigError
from ssmseg.experiments.cv import run_cv


def cfg_for(dataset, out):
    return build_config(explicit={
        "data": {"dataset": str(dataset), "crop_size": 16, "batch_size": 4, "max_patches": 8},
        "model": {"name": "unet", "width": 8, "depth": 2}, "train": {"epochs": 2}, "cv": {"folds": 2},
        "runtime": {"out_dir": str(out), "name": "cv", "device": "cpu"}})  # fmt: skip


def test_two_folds_summary_and_skip(synthetic_dataset, tmp_path):
    summary = run_cv(cfg_for(synthetic_dataset, tmp_path))
    root = tmp_path / "cv"
    assert [r["fold"] for r in summary["folds"]] == [0, 1]
    assert (root / "fold_0" / "checkpoints" / "best.pt").is_file() and (root / "fold_1" / "history.json").is_file()
    saved = json.loads((root / "cv_summary.json").read_text())
    values = [r["val/miou"] for r in saved["folds"]]
    assert saved["mean"]["val/miou"] == pytest.approx(sum(values) / 2)
    with open(root / "cv_summary.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["fold", "best_epoch", "val/miou"] and rows[-2][0] == "mean" and rows[-1][0] == "std"
    # Each fold normalises with its own training statistics.
    import torch

    stats = {torch.load(root / f"fold_{k}" / "checkpoints" / "best.pt", weights_only=True)["normalization"]["stats_key"]
             for k in (0, 1)}  # fmt: skip
    assert stats == {"fold_0", "fold_1"}
    stamp = (root / "fold_0" / "history.json").stat().st_mtime_ns
    run_cv(cfg_for(synthetic_dataset, tmp_path))
    assert (root / "fold_0" / "history.json").stat().st_mtime_ns == stamp  # completed folds are skipped


def test_more_folds_than_prepared_is_an_error(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="more than the 2 folds"):
        run_cv(cfg_for(synthetic_dataset, tmp_path), folds=3)
