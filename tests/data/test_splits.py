"""Fold coverage: every cv fold's training part (the train units outside it) holds every class found outside
the fold, as far as the data allows; what cannot be covered is one warning per fold and class, from prep and
again when ``ssmseg cv`` starts that fold."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from ssmseg import progress
from ssmseg.config import build_config
from ssmseg.data.check import check_dataset
from ssmseg.data.prepare import prepare
from ssmseg.data.splits import SPLITS, assign_folds, assign_splits, cover_folds, training_gaps, untrainable
from ssmseg.experiments.cv import run_cv
from ssmseg.tasks.segmentation.checks import check_folds
from tests.data.helpers import prep_config, scene, write_tif

RATIOS = (0.6, 0.2, 0.2)


def rare_in(units: int) -> np.ndarray:
    """(30, 4) labelled pixels per unit: three common classes spread at random, class 0 in ``units`` units only."""
    rng = np.random.default_rng(7)
    counts = np.zeros((30, 4), np.int64)
    counts[:, 1:] = rng.integers(0, 200, (30, 3)) * (rng.random((30, 3)) < 0.6)
    counts[:units, 0] = [120, 90, 60][:units]
    return counts


def old_and_new(counts: np.ndarray, seed: int, k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = assign_splits(counts, RATIOS, seed)
    folds = assign_folds(counts, split, k, seed)
    return split, cover_folds(counts, split, folds, k, seed, RATIOS), folds


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_independent_assignment_leaves_a_fold_without_a_class_and_the_cover_does_not(seed):
    counts = rare_in(3)  # stratified: one unit of the rare class to each split, the train and val ones in two folds
    old, new, folds = old_and_new(counts, seed)
    assert 0 in {c for _, c in training_gaps(counts, old, folds, 3)}, "the old rule left no gap: nothing tested"
    assert training_gaps(counts, new, folds, 3) == []
    for f in range(3):  # stated directly: each class outside fold f is in a train unit outside fold f
        outside = (folds >= 0) & (folds != f)
        trained = outside & (new == SPLITS.index("train"))
        assert ((counts[outside].sum(0) > 0) <= (counts[trained].sum(0) > 0)).all()
    changed = np.flatnonzero(old != new)
    assert 1 <= len(changed) <= 2 * len(training_gaps(counts, old, folds, 3))  # the fewest units: a move, a swap
    assert (new[old == SPLITS.index("test")] == SPLITS.index("test")).all()  # test units never move
    assert set(new[old != SPLITS.index("test")]) <= {0, 1}
    for f in range(3):  # every fold still validates on something
        assert counts[(new == 1) & (folds >= 0) & (folds != f)].sum() > 0


def test_the_cover_is_deterministic_for_a_seed_and_changes_nothing_without_gaps():
    # Two folds of four equal units (train, train, val, val); the rare class only in the val units, so both folds
    # lack it and every choice (which val unit moves in, which train unit moves back) is a tie the seed breaks.
    counts = np.array([[0, 100]] * 2 + [[30, 100]] * 2 + [[0, 100]] * 2 + [[30, 100]] * 2)
    split, folds = np.array([0, 0, 1, 1] * 2), np.array([0] * 4 + [1] * 4)
    outcomes = set()
    for seed in range(8):
        runs = [cover_folds(counts, split, folds, 2, seed, RATIOS) for _ in range(3)]
        assert all((r == runs[0]).all() for r in runs), seed
        assert training_gaps(counts, runs[0], folds, 2) == []
        outcomes.add(tuple(runs[0]))
    assert len(outcomes) > 1  # the seed decides the ties (so the repeats above test something)
    plenty = rare_in(3)
    plenty[:, 0] = 50  # the rare class everywhere: the independent assignment already covers every fold
    split = assign_splits(plenty, RATIOS, 0)
    folds = assign_folds(plenty, split, 3, 0)
    assert training_gaps(plenty, split, folds, 3) == []
    assert (cover_folds(plenty, split, folds, 3, 0, RATIOS) == split).all()


def test_a_class_in_one_fold_only_cannot_be_covered_and_is_worded_per_fold():
    counts = rare_in(1)
    _, new, folds = old_and_new(counts, 0)
    assert training_gaps(counts, new, folds, 3) == []  # nothing outside its fold to learn from: not a gap to fix
    f = int(folds[0])
    trained = {g: counts[(folds >= 0) & (folds != g) & (new == 0)].sum(0).tolist() for g in range(3)}
    heldout = {g: counts[folds == g].sum(0).tolist() for g in range(3)}
    assert untrainable(["rare", "a", "b", "c"], trained, heldout) == [
        f"fold_{f}: rare (120 held-out px) has no training pixels outside this fold; no method can learn it there"
    ]


def test_prep_covers_every_fold_of_a_scene_and_stays_leak_free(tmp_path):
    _img, msk = scene(tmp_path, size=96)
    labels = ((np.arange(96)[None, :] // 8 + np.arange(96)[:, None] // 8) % 3).astype(np.uint8)
    for r, c in ((0, 0), (32, 64), (80, 16)):  # a fourth class in three blocks of 16
        labels[r + 2 : r + 12, c + 2 : c + 12] = 3
    write_tif(msk, labels)
    cfg = prep_config(tmp_path, classes=["c0", "c1", "c2", "c3"], split={"block_size": 16, "folds": 3})
    result = prepare(cfg, tmp_path / "ds")
    m = result.manifest
    assert check_dataset(tmp_path / "ds").problems == []
    for f in range(3):
        outside = np.sum([m["class_counts"][f"fold_{g}"] for g in range(3) if g != f], axis=0)
        assert ((outside > 0) <= (np.array(m["cv_train_counts"][f"fold_{f}"]) > 0)).all(), f
    assert not any("no training pixels" in w for w in result.warnings)


def test_a_class_in_one_block_is_warned_by_prep_and_again_when_cv_starts_its_fold(tmp_path, monkeypatch):
    _img, msk = scene(tmp_path, size=64)
    labels = ((np.arange(64)[None, :] // 8 + np.arange(64)[:, None] // 8) % 3).astype(np.uint8)
    labels[18:30, 34:46] = 3  # one block of 16 only
    write_tif(msk, labels)
    cfg = prep_config(tmp_path, classes=["c0", "c1", "c2", "c3"], split={"block_size": 16, "folds": 2})
    result = prepare(cfg, tmp_path / "ds")
    fold = next(p["fold"] for p in result.manifest["patches"] if p["window"][:2] == [16, 32])  # the class's block
    line = f"fold_{fold}: c3 (144 held-out px) has no training pixels outside this fold; no method can learn it there"
    assert [w for w in result.warnings if "held-out px" in w] == [line]
    assert check_folds(tmp_path / "ds", 2)[fold] == [line] and check_folds(tmp_path / "ds", 2)[1 - fold] == []
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    old = tmp_path / "old"  # as prep wrote it before it covered folds: no cv_train_counts
    shutil.copytree(tmp_path / "ds", old)
    (old / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "cv_train_counts"}))
    assert check_folds(old, 2)[fold] == [line + " (prepared before prep covered folds: prep into a new --out)"]
    cfg = build_config(
        explicit={
            "data": {"dataset": str(tmp_path / "ds"), "crop_size": 16, "batch_size": 4, "max_patches": 8},
            "model": {"name": "unet", "width": 4, "depth": 1},
            "train": {"epochs": 1},
            "cv": {"folds": 2},
            "runtime": {"out_dir": str(tmp_path / "runs"), "name": "cv", "device": "cpu"},
        }
    )
    printed = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=printed, width=300))
    summary = run_cv(cfg)
    text = printed.getvalue()
    assert text.count(line) == 1 and text.index(line) < text.index(f"fold_{fold} ({fold + 1}/2)")
    assert summary["folds"][fold]["warnings"] == [line] and "warnings" not in summary["folds"][1 - fold]


@pytest.mark.parametrize("seed", range(12))
def test_the_cover_never_opens_a_gap_nor_empties_a_val_part_on_random_counts(seed):
    rng = np.random.default_rng(seed)
    units, classes = int(rng.integers(6, 40)), int(rng.integers(2, 7))
    counts = rng.integers(1, 300, (units, classes)) * (rng.random((units, classes)) < rng.uniform(0.1, 0.6))
    split = assign_splits(counts, RATIOS, seed)
    folds = assign_folds(counts, split, 3, seed)
    new = cover_folds(counts, split, folds, 3, seed, RATIOS)
    before, after = set(training_gaps(counts, split, folds, 3)), set(training_gaps(counts, new, folds, 3))
    assert after <= before  # never opens one; a gap stays only where closing it would leave a fold without val
    names = [f"c{c}" for c in range(classes)]
    trained = {f: counts[(folds >= 0) & (folds != f) & (new == 0)].sum(0).tolist() for f in range(3)}
    heldout = {f: counts[folds == f].sum(0).tolist() for f in range(3)}
    warned = untrainable(names, trained, heldout)
    for f, c in after:  # and then it is warned wherever the fold holds the class
        assert (f"fold_{f}: c{c} (" in " ".join(warned)) == (heldout[f][c] > 0)
    assert (new[split == 2] == 2).all() and (split[new == 2] == 2).all()
    for f in range(3):
        outside = (folds >= 0) & (folds != f) & (counts.sum(1) > 0)
        assert (split[outside] == 1).any() <= (new[outside] == 1).any()
        was, now = (counts[outside & (s == 0)].sum(0) > 0 for s in (split, new))
        assert (was <= now).all()  # a class trained before still is
