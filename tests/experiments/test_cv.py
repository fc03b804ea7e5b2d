"""ssmseg cv: one run per fold, the best epoch chosen on the val split outside the fold, the held-out fold
scored once with best.pt, a summary with per-class IoU and mean +- std, completed folds skipped, too many
folds refused."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from ssmseg import progress
from ssmseg.config import build_config
from ssmseg.data import datasets
from ssmseg.data.datasets import PatchDataset, heldout_buffer, select
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError
from ssmseg.experiments.cv import run_cv, summarise


def cfg_for(dataset, out, name="cv", **train):
    return build_config(
        explicit={
            "data": {"dataset": str(dataset), "crop_size": 16, "batch_size": 4, "max_patches": 8},
            "model": {"name": "unet", "width": 4, "depth": 1},
            "train": {"epochs": 2, **train},
            "cv": {"folds": 2},
            "runtime": {"out_dir": str(out), "name": name, "device": "cpu"},
        }
    )


@pytest.fixture(scope="module")
def cv_run(synthetic_dataset, tmp_path_factory):
    """One two-fold cv on the synthetic dataset, recording every patch each part of each fold reads."""
    out = tmp_path_factory.mktemp("cv")
    reads: list[tuple[int | None, str, int]] = []  # (fold, part, patch index)
    original = PatchDataset.__getitem__

    def spy(self, i):
        reads.append((self.fold, self.part, self.indices[i]))
        return original(self, i)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PatchDataset, "__getitem__", spy)
        mp.setattr(progress, "console", Console(file=printed, width=200))
        summary = run_cv(cfg_for(synthetic_dataset, out))
    summary["printed"] = printed.getvalue()
    return summary, out / "cv", reads


def test_epoch_lines_name_their_fold(cv_run):
    lines = [line for line in cv_run[0]["printed"].splitlines() if "epoch " in line and "val/" in line]
    assert [line.split(": epoch")[0] for line in lines] == [
        "fold_0 (1/2)",
        "fold_0 (1/2)",
        "fold_1 (2/2)",
        "fold_1 (2/2)",
    ]


def test_the_reported_fold_never_trains_or_selects(cv_run, synthetic_dataset):
    summary, root, reads = cv_run
    manifest = json.loads((synthetic_dataset / "manifest.json").read_text())
    patches = manifest["patches"]
    for k in (0, 1):
        fold_k = {i for i, p in enumerate(patches) if p["fold"] == k}
        trained = {j for f, part, j in reads if f == k and part == "train"}
        validated = {j for f, part, j in reads if f == k and part == "val"}
        scored = [j for f, part, j in reads if f == k and part == "heldout"]
        assert trained and validated and not (trained | validated) & fold_k  # fold k never trained or selected
        assert all(patches[j]["split"] == "train" for j in trained)
        assert validated == {i for i, p in enumerate(patches) if p["split"] == "val" and p["fold"] not in (k, -1)}
        assert sorted(scored) == sorted(fold_k)  # scored once, every patch of the fold
        row = summary["folds"][k]
        assert row["selected_on"] == f"val split outside fold {k}" and row["scored_on"] == f"fold {k} itself"
        best = torch.load(root / f"fold_{k}" / "checkpoints" / "best.pt", weights_only=True)
        assert best["epoch"] + 1 == row["best_epoch"] and best["normalization"]["stats_key"] == f"fold_{k}"
        assert best["selected_on"] == row["selected_on"]
        # The scored confusion matrix counts exactly the labelled pixels of fold k (no buffer at overlap 0).
        assert row["heldout"]["pixels"] == sum(manifest["class_counts"][f"fold_{k}"])
    assert not any(part == "test" for _, part, _ in reads)  # the test split is left for eval


def test_summary_reports_heldout_scores_per_class_and_what_selected(cv_run, synthetic_dataset, tmp_path):
    _, root, _ = cv_run
    saved = json.loads((root / "cv_summary.json").read_text())
    assert saved["metrics"][0] == "heldout/miou" and saved["headline"] == "heldout/miou"
    values = [r["heldout/miou"] for r in saved["folds"]]
    assert saved["mean"]["heldout/miou"] == pytest.approx(np.mean(values))
    assert saved["std"]["heldout/miou"] == pytest.approx(np.std(values, ddof=1))
    classes = json.loads((synthetic_dataset / "manifest.json").read_text())["classes"]
    assert list(saved["per_class_iou"]["mean"]) == classes
    water = [r["per_class_iou"]["water"] for r in saved["folds"]]
    if None not in water:
        assert saved["per_class_iou"]["mean"]["water"] == pytest.approx(np.mean(water))
    assert "never the fold itself" in saved["selected_on"] and "held-out fold" in saved["scored_on"]
    assert saved["protocol"]["exclude_classes"] == [] and saved["protocol"]["boundary_ignore"] == 0
    with open(root / "cv_summary.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["fold", "best_epoch", "heldout/miou"] and "iou/water" in rows[0]
    assert rows[0][-2:] == ["selected_on", "scored_on"] and rows[-2][0] == "mean" and rows[-1][0] == "std"
    stamp = (root / "fold_0" / "history.json").stat().st_mtime_ns
    run_cv(cfg_for(synthetic_dataset, root.parent))
    assert (root / "fold_0" / "history.json").stat().st_mtime_ns == stamp  # completed folds are skipped


def test_the_fold_epoch_follows_the_min_delta_rule(synthetic_dataset, tmp_path):
    summary = run_cv(
        cfg_for(synthetic_dataset, tmp_path, "margin", epochs=3, monitor="val/loss", mode="min", min_delta=1e3)
    )
    for row in summary["folds"]:
        history = json.loads((tmp_path / "margin" / f"fold_{row['fold']}" / "history.json").read_text())
        losses = [r["val/loss"] for r in history["epochs"]]
        assert min(losses[1:]) < losses[0], "the test needs a later epoch that is better"
        assert row["best_epoch"] == 1 and history["min_delta"] == 1e3


def test_select_last_scores_each_fold_at_its_last_epoch_and_says_so(synthetic_dataset, tmp_path):
    # mode max on the val loss: the monitored best is an early epoch, so best and last differ
    over = {"epochs": 3, "monitor": "val/loss", "mode": "max"}
    best = run_cv(cfg_for(synthetic_dataset, tmp_path, "best", **over))
    summary = run_cv(cfg_for(synthetic_dataset, tmp_path, "last", **over, select="last"))
    assert any(row["best_epoch"] < 3 for row in best["folds"]), "the test needs a best epoch before the last"
    assert [row["best_epoch"] for row in summary["folds"]] == [3, 3]
    assert all(ckpt.load(tmp_path / "last" / f"fold_{k}" / "checkpoints" / "best.pt")["epoch"] == 2 for k in (0, 1))
    assert all("train.select: last" in row["selected_on"] for row in summary["folds"])
    assert "train.select: last" in summary["selected_on"] and "at the last epoch" in summary["note"]
    assert summary["select"] == "last" and best["select"] == "best"  # the rule itself, for readers of the summary
    from ssmseg.report import cv_headline
    from ssmseg.report.analysis import analyse_cv
    from ssmseg.report.runs import read_cv

    assert "at the kept last epoch" in cv_headline(analyse_cv(read_cv(tmp_path / "last")))
    assert "selected the epoch" in cv_headline(analyse_cv(read_cv(tmp_path / "best")))


def test_more_folds_than_prepared_is_an_error(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="more than the 2 folds"):
        run_cv(cfg_for(synthetic_dataset, tmp_path), folds=3)


def test_parts_of_a_fold_are_disjoint():
    parts = [("train", 0), ("val", 0), ("train", 1), ("val", 1), ("test", -1), ("train", 2), ("val", 2)]
    patches = [{"split": s, "fold": f} for s, f in parts]
    m = {"patches": patches}
    assert select(m, "train", 1) == ([0, 5], "fold_1")
    assert select(m, "val", 1) == ([1, 6], "fold_1")
    assert select(m, "heldout", 1) == ([2, 3], "fold_1")
    assert select(m, "test", 1) == ([4], "fold_1")
    assert select(m, "val") == ([1, 3, 6], "train")
    with pytest.raises(ValueError):
        select(m, "heldout")


def test_heldout_labels_near_other_folds_are_ignored():
    """Prep buffers val/test against training windows only; the held-out fold is buffered against every
    window outside it (hand-computed: buffer 2, an 8-px fold-1 window touching a fold-0 window on its left,
    and one overlapping it by 3 px as in split.mode random)."""
    patches = [
        {"source": 0, "window": [0, 8, 8, 8], "fold": 1, "split": "train"},  # held out (fold 1)
        {"source": 0, "window": [0, 0, 8, 8], "fold": 0, "split": "train"},  # left neighbour
        {"source": 0, "window": [5, 8, 8, 8], "fold": 0, "split": "val"},  # overlaps 3 rows below
        {"source": 1, "window": [0, 0, 8, 8], "fold": 0, "split": "train"},  # another scene: no effect
        {"source": 0, "window": [0, 16, 8, 8], "fold": -1, "split": "test"},  # test: not used by the fold
    ]
    manifest = {"patches": patches, "split": {"buffer": 2}}
    regions = heldout_buffer(manifest, [0], 1)
    assert sorted(regions[0]) == [(0, 0, 8, 2), (3, 0, 5, 8)]
    manifest["split"]["buffer"] = 0
    assert heldout_buffer(manifest, [0], 1) == {0: [(5 - 0, 0, 3, 8)]}  # the overlap itself, even unbuffered


def test_reconstruction_without_a_scorer_says_so():
    rows = [
        {
            "format": 2,
            "fold": k,
            "best_epoch": 1,
            "monitor": "val/psnr",
            "selected_on": f"val split outside fold {k}",
            "scored_on": None,
            "val/psnr": 20.0 + k,
        }
        for k in (0, 1)
    ]
    summary = summarise(rows, "val/psnr", False, "reconstruction")
    assert summary["scored_on"] is None and "no held-out scorer for task reconstruction" in summary["note"]
    assert summary["metrics"] == ["val/psnr"] and summary["mean"]["val/psnr"] == pytest.approx(20.5)


def test_describe_part_names_what_each_part_holds():
    assert datasets.describe_part("val", None) == "the val split"
    assert datasets.describe_part("val", 2) == "val split outside fold 2"


def test_the_report_shows_the_heldout_scores(cv_run):
    from ssmseg.report.analysis import analyse_cv
    from ssmseg.report.runs import read_cv

    _, root, _ = cv_run
    a = analyse_cv(read_cv(root))
    assert a["headline"] == "heldout/miou" and a["metrics"][0] == "heldout/miou" and "format" not in a["metrics"]
    assert "never the fold itself" in a["selected_on"] and {c["class"] for c in a["per_class"]} >= {"water"}
    assert not any("selected_on" in m for m in a["missing"])


def test_baselines_beside_the_model_on_the_same_held_out_pixels_and_in_eval(synthetic_dataset, tmp_path):
    from ssmseg.experiments.evaluate import evaluate
    from ssmseg.tasks.segmentation.baseline import baseline_scores

    cfg = cfg_for(synthetic_dataset, tmp_path, "cvb").model_copy(deep=True)
    cfg.cv.baselines, cfg.baseline.methods, cfg.eval.baselines = True, ["majority", "logistic"], True
    summary = run_cv(cfg)
    fold0 = summary["folds"][0]["baselines"]
    assert fold0["scored_on"] == baseline_scores(cfg, synthetic_dataset, 0)["scored_on"] == "held-out fold 0"
    assert set(summary["baselines"]) == {"majority", "logistic"}
    logistic = [r["baselines"]["methods"]["logistic"]["miou"] for r in summary["folds"]]
    assert summary["baselines"]["logistic"]["miou"]["mean"] == pytest.approx(sum(logistic) / 2)
    assert summary["baselines"]["logistic"]["miou"]["mean"] > summary["baselines"]["majority"]["miou"]["mean"]
    result = evaluate(cfg, tmp_path / "cvb" / "fold_0", tmp_path / "ev", [], [], None)
    assert set(result.metrics["baselines"]["methods"]) == {"majority", "logistic"}
    assert result.metrics["baselines"]["scored_on"] == baseline_scores(cfg, synthetic_dataset, 0, "test")["scored_on"]
    assert result.metrics["baselines"]["scored_on"] != fold0["scored_on"]  # eval scores the test split
