"""ssmseg baseline: classical per-pixel classifiers fitted on the training pixels of a split and scored on the
same test pixels, with the same metrics, as ssmseg eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ssmseg import outputs
from ssmseg.config import build_config
from ssmseg.data.prepare import prepare
from ssmseg.tasks.segmentation.baseline import run_baseline
from ssmseg.tasks.segmentation.metrics import metrics_from_confusion
from tests.cli.conftest import assert_one_line_error, invoke
from tests.data.helpers import prep_config, write_tif


def texture_scene(root, size: int = 64, seed: int = 0):
    """Three classes in 8x8 blocks: c0 bright; c1 pixel noise N(50, 20); c2 a smooth field with the same
    N(50, 20) marginal. Per pixel, c1 and c2 look alike; their local standard deviation tells them apart."""
    rng = np.random.default_rng(seed)
    labels = ((np.arange(size)[None] // 8 + 2 * (np.arange(size)[:, None] // 8)) % 3).astype(np.uint8)
    bands = []
    for _ in range(2):
        noise = rng.normal(50, 20, (size, size))
        smooth = gaussian_filter(rng.normal(0, 1, (size, size)), 2.0)
        smooth = 50 + 20 * (smooth - smooth.mean()) / smooth.std()
        bands.append(np.select([labels == 0, labels == 1], [150 + rng.normal(0, 5, (size, size)), noise], smooth))
    write_tif(root / "img" / "t.tif", np.stack(bands).astype(np.float32))
    write_tif(root / "msk" / "t.tif", labels)


@pytest.fixture(scope="module")
def texture_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("texture")
    texture_scene(root, size=96)
    return prepare(prep_config(root, overlap=0.25, split={"block_size": 32, "folds": 2}), root / "ds").out


def owned(lab: np.ndarray, patch: dict) -> np.ndarray:
    """The labelled pixels a patch owns, flattened."""
    oh, ow = patch["own"]
    region = lab[:oh, :ow]
    return region[region != 255].astype(np.int64)


def cfg(**baseline):
    return build_config(explicit={"baseline": {"trees": 30, **baseline}})


def test_baselines_score_eval_pixels_with_eval_metrics(texture_ds, tmp_path):
    result = run_baseline(cfg(), texture_ds, out=tmp_path / "b")
    r = result.results
    manifest = json.loads((texture_ds / "manifest.json").read_text())
    labels = np.load(texture_ds / "labels.npy")
    truth = np.concatenate([owned(labels[i], p) for i, p in enumerate(manifest["patches"]) if p["split"] == "test"])
    # eval's pixels: each labelled test pixel once (overlapping patches: the region each owns), as prep counts them
    assert r["test_pixels"] == len(truth) == sum(manifest["class_counts"]["test"])
    assert len(truth) < sum(
        int((labels[i] != 255).sum()) for i, p in enumerate(manifest["patches"]) if p["split"] == "test"
    )  # the patches overlap: counting all would count twice
    # Training pixels are the owned ones, counted once (patches overlap): the manifest's own count.
    assert r["train_pixels"]["labelled"] == sum(manifest["class_counts"]["train"])
    assert r["train_pixels"]["class_counts"] == manifest["class_counts"]["train"]
    fitted, scored = r["protocol"]["fitted"], r["protocol"]["scored_pixels"]  # what was fitted on how many pixels
    assert f"{r['train_pixels']['labelled']:,} labelled training pixels" in fitted
    assert f"on {r['train_pixels']['used']:,} of them" in fitted and scored.startswith(f"{len(truth):,}: every")
    majority = int(np.argmax(manifest["class_counts"]["train"]))
    cm = np.bincount(truth * 3 + majority, minlength=9).reshape(3, 3)
    expected = metrics_from_confusion(cm, manifest["classes"])
    got = r["methods"]["majority"]
    assert got["miou"] == pytest.approx(expected["miou"]) and got["oa"] == pytest.approx(expected["oa"])
    assert got["confusion_matrix"] == cm.tolist()
    logistic, forest = r["methods"]["logistic"], r["methods"]["random_forest"]
    assert logistic["per_class"]["c0"]["iou"] > 0.95  # bright: separable from the spectrum
    assert forest["miou"] > 0.8 and forest["miou"] > logistic["miou"] + 0.15  # texture needs the local statistics
    assert all(m["seconds"] >= 0 and sum(map(sum, m["confusion_matrix"])) == len(truth) for m in r["methods"].values())
    assert json.loads((result.out / "baseline.json").read_text())["methods"]["random_forest"]["miou"] == forest["miou"]
    rows = (result.out / "baseline.csv").read_text().splitlines()
    assert rows[0].startswith("method,oa,miou") and [row.split(",")[0] for row in rows[1:]] == list(r["methods"])
    assert outputs.read_marker(result.out)["kind"] == "baseline"


def test_a_fold_is_scored_on_its_held_out_pixels_and_the_sample_is_capped(texture_ds, tmp_path):
    r = run_baseline(cfg(max_train_pixels=100, methods=["majority", "logistic"]), texture_ds, 1, tmp_path / "f").results
    from ssmseg.data.datasets import PatchDataset

    def labelled(part):  # the pixels cv uses: held-out labels near other folds' windows are ignored
        ds = PatchDataset(texture_ds, part, 1)
        return sum(len(owned(ds[i]["mask"].numpy(), ds.manifest["patches"][ds.indices[i]])) for i in range(len(ds)))

    assert r["test_pixels"] == labelled("heldout") and r["scored_on"] == "held-out fold 1"
    assert 0 < r["train_pixels"]["labelled"] <= labelled("train")  # overlapping patches: each pixel once
    assert r["train_pixels"]["used"] == 100 and list(r["methods"]) == ["majority", "logistic"]


def test_baseline_command(texture_ds, tmp_path):
    args = ["baseline", texture_ds, "--set", "baseline.trees=5", "--set", f"runtime.out_dir={tmp_path / 'runs'}"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    for needle in ("majority", "logistic", "random_forest", "mIoU", "fitted in", "wrote"):
        assert needle in first.output, needle
    assert (tmp_path / "runs" / f"baseline_{texture_ds.name}" / "baseline.json").is_file()
    again = invoke(*args)  # the same baselines again replace their own folder; other settings get a new one
    assert again.exit_code == 0 and not (tmp_path / "runs" / f"baseline_{texture_ds.name}-2").exists()
    other = invoke(*args, "--seed", "3")
    assert other.exit_code == 0 and (tmp_path / "runs" / f"baseline_{texture_ds.name}-2").is_dir()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_one_line_error(invoke(*args, "--out", mine), 1, "mine", "ssmseg did not write")
    assert (mine / "notes.txt").read_text() == "keep"
    assert_one_line_error(invoke(*args, "--fold", 7), 2, "--fold 7", "2 folds", "0 to 1")
    assert_one_line_error(invoke("baseline", tmp_path / "nope"), 1, "nope", "ssmseg prep")
    assert_one_line_error(invoke(*args, "--set", "baseline.windows=[4]"), 2, "baseline.windows")


def test_baselines_are_scored_exactly_as_the_model_excluded_classes_and_all(texture_ds):
    from ssmseg.tasks.segmentation.baseline import baseline_scores

    plain = baseline_scores(cfg(methods=["majority", "logistic"]), texture_ds)
    c = cfg(methods=["majority", "logistic"]).model_copy(deep=True)
    c.eval.exclude_classes = ["c2"]
    excluded = baseline_scores(c, texture_ds)
    for name in ("majority", "logistic"):
        ious = plain["methods"][name]["per_class_iou"]
        assert excluded["methods"][name]["per_class_iou"] == ious  # the rows stay; the mean leaves c2 out
        present = [ious[k] for k in ("c0", "c1") if ious[k] is not None]
        assert excluded["methods"][name]["miou"] == pytest.approx(sum(present) / len(present))
        assert excluded["methods"][name]["oa"] == plain["methods"][name]["oa"]
    assert excluded["protocol"]["exclude_classes"] == ["c2"]
    assert "training split" in excluded["protocol"]["majority"]


def test_test_patches_score_each_labelled_pixel_once_as_eval_and_baselines_do(texture_ds):
    import torch

    from ssmseg.data.datasets import PatchDataset
    from ssmseg.tasks.segmentation.baseline import baseline_scores
    from ssmseg.tasks.segmentation.evaluate import patch_confusion

    ds = PatchDataset(texture_ds, "test")
    state = {"num_classes": 3, "ignore_index": 255, "classes": ["c0", "c1", "c2"]}

    def constant(x):  # always c1
        return torch.stack([torch.zeros_like(x[:, 0]), torch.ones_like(x[:, 0]), torch.zeros_like(x[:, 0])], 1)

    cm = patch_confusion(cfg(), state, constant, torch.device("cpu"), ds, "test")
    assert cm.sum() == sum(ds.manifest["class_counts"]["test"])  # prep's count: each owned pixel once
    assert cm.sum(1).tolist() == ds.manifest["class_counts"]["test"]
    assert baseline_scores(cfg(methods=["majority"]), texture_ds)["test_pixels"] == cm.sum()


def test_the_forest_fitted_a_few_trees_at_a_time_is_the_forest_of_one_fit():
    """fit_forest adds trees with warm_start (for its progress line): the same trees as one fit of all of them."""
    from sklearn.ensemble import RandomForestClassifier

    from ssmseg.tasks.segmentation.baseline import fit_forest

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)
    one = RandomForestClassifier(n_estimators=10, max_depth=6, n_jobs=1, random_state=3).fit(x, y)
    steps = fit_forest(x, y, 10, 6, 1, 3)
    assert len(steps.estimators_) == 10
    test = rng.normal(size=(2000, 5)).astype(np.float32)
    assert np.array_equal(one.predict_proba(test), steps.predict_proba(test))
