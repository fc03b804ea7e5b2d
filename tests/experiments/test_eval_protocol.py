"""The metric protocol of eval (and cv scoring), with hand-computed confusion matrices: classes left out of the
mean, an eroded-boundary band, the test split (never the split that selected the checkpoint), per-scene
metrics, distinct output names for inputs of the same name, and finished scenes kept when eval stops."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from ssmseg.config import build_config, dump_config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError, Interrupted
from ssmseg.experiments.evaluate import evaluate
from ssmseg.outputs import read_marker
from ssmseg.tasks.segmentation import evaluate as seg_eval
from ssmseg.tasks.segmentation.metrics import boundary_band, metrics_from_confusion
from tests.data.helpers import write_tif


class AlwaysFirst(nn.Module):
    """Logits that pick class 0 everywhere: every confusion matrix below is known by hand."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, *x.shape[-2:])
        out[:, 0] = 1.0
        return out


@pytest.fixture
def always_first(monkeypatch):
    monkeypatch.setattr(seg_eval, "load_model", lambda state, device: AlwaysFirst(state["num_classes"]))


def checkpoint(tmp_path, bands=3, classes=("dark", "bright"), dataset=None, fold=None):
    cfg = build_config(explicit={"model": {"name": "unet", "width": 4, "depth": 1}})
    n = len(classes)
    state = {
        "config": yaml.safe_load(dump_config(cfg)),
        "model": {},
        "in_channels": bands,
        "num_classes": n,
        "classes": list(classes),
        "palette": ["#000080", "#FFFF00", "#00FF00", "#FF0000", "#808080"][:n],
        "ignore_index": 255,
        "labels": {"kind": "index", "values": {str(i): i for i in range(n)}, "ignored": []},
        "band_names": None,
        "normalization": {"offset": [0.0] * bands, "scale": [1.0] * bands, "method": "zscore", "stats_key": "train"},
        "class_counts_train": [1] * n,
        "dataset": str(dataset or tmp_path / "none"),
        "fold": fold,
        "nodata": None,
    }
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt.save(state, path)
    return path


def cfg(**ev):
    return build_config(
        explicit={
            "data": {"crop_size": 16},
            "eval": {"window": 16, "overlap": 0.25, **ev},
            "runtime": {"device": "cpu"},
        }
    )


def halves(tmp_path, name="s", size=40, split=20):
    """A 40x40 scene whose truth is 'dark' above row ``split`` and 'bright' from it down."""
    image = np.full((3, size, size), 50, np.uint8)
    truth = np.zeros((size, size), np.uint8)
    truth[split:] = 1
    return write_tif(tmp_path / f"{name}.tif", image), write_tif(tmp_path / f"{name}_mask.tif", truth)


# --- by hand ---------------------------------------------------------------------------------------------------


def test_excluded_classes_leave_the_mean_but_not_oa():
    cm = np.array([[4, 1, 0], [2, 2, 0], [0, 0, 1]])  # truth rows: a, b, clutter
    full = metrics_from_confusion(cm, ["a", "b", "clutter"])
    part = metrics_from_confusion(cm, ["a", "b", "clutter"], exclude=["clutter"])
    iou_a, iou_b = 4 / (5 + 6 - 4), 2 / (4 + 3 - 2)  # tp / (support + predicted - tp)
    assert full["miou"] == pytest.approx((iou_a + iou_b + 1.0) / 3)
    assert part["miou"] == pytest.approx((iou_a + iou_b) / 2)
    assert part["mean_f1"] == pytest.approx((2 * 4 / 11 + 2 * 2 / 7) / 2)
    assert part["oa"] == full["oa"] == pytest.approx(7 / 10) and part["kappa"] == full["kappa"]
    assert part["per_class"]["clutter"]["iou"] == 1.0


def test_boundary_band_by_hand():
    truth = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 255, 255, 1, 1]])
    band1 = boundary_band(truth, 1, 255)
    assert band1.astype(int).tolist() == [[0, 0, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert not boundary_band(truth, 0, 255).any()
    # Radius 2 (a disc): (0, 0) is 2 rows above class 2, (0, 4) 2 columns right of class 0; (0, 5) is 3 away.
    band2 = boundary_band(truth, 2, 255)
    assert band2[0].tolist() == [True, True, True, True, True, False]
    pred = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0], [2, 2, 0, 0, 1, 1]])
    keep = (truth != 255) & ~band1
    n = 3
    cm = np.bincount(truth[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
    assert cm.tolist() == [[2, 0, 0], [2, 4, 0], [0, 0, 0]]  # kept: two dark, six bright (four right)


# --- eval end to end -------------------------------------------------------------------------------------------


def test_boundary_ignore_and_exclude_classes_in_scene_eval(tmp_path, always_first):
    # The boundary lies between rows 11 and 12, exactly where sliding-window strips meet (rows 0-11, 12-23, ...
    # for 16-px windows with 0.25 overlap): each strip needs the truth rows of its neighbour to find the band.
    src, mask = halves(tmp_path, split=12)
    plain = evaluate(cfg(), checkpoint(tmp_path), tmp_path / "plain", [src], [mask], None).metrics
    assert plain["confusion_matrix"] == [[480, 0], [1120, 0]]
    eroded = evaluate(
        cfg(boundary_ignore=2, exclude_classes=["bright"]),
        checkpoint(tmp_path),
        tmp_path / "eroded",
        [src],
        [mask],
        None,
    ).metrics
    # Rows 10-13 lie within 2 px of the boundary: 4 x 40 pixels are left out.
    assert eroded["confusion_matrix"] == [[400, 0], [1040, 0]]
    assert plain["miou"] == pytest.approx((480 / 1600 + 0) / 2)  # IoU dark = tp / (support + predicted - tp)
    assert eroded["miou"] == pytest.approx(400 / 1440) and eroded["oa"] == pytest.approx(400 / 1440)  # dark only
    saved = json.loads((tmp_path / "eroded" / "metrics.json").read_text())["protocol"]
    assert saved["exclude_classes"] == ["bright"] and saved["mean_over"] == ["dark"]
    assert saved["boundary_ignore"] == 2 and "2 px" in saved["boundary"]


def test_unknown_excluded_class_is_one_line(tmp_path, always_first):
    src, mask = halves(tmp_path)
    with pytest.raises(ConfigError, match="'clutter' is not a class of this model; its classes are dark, bright"):
        evaluate(cfg(exclude_classes=["clutter"]), checkpoint(tmp_path), tmp_path / "out", [src], [mask], None)
    assert not (tmp_path / "out").exists()


def test_eval_scores_the_test_split_never_the_selecting_one(tmp_path, synthetic_dataset, always_first):
    manifest = json.loads((synthetic_dataset / "manifest.json").read_text())
    path = checkpoint(tmp_path, bands=manifest["bands"], classes=manifest["classes"], dataset=synthetic_dataset)
    metrics = evaluate(cfg(), path, tmp_path / "out", [], [], None).metrics
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum(1).tolist() == manifest["class_counts"]["test"]  # every labelled test pixel, nothing else
    assert cm.sum(1).tolist() != manifest["class_counts"]["val"]
    assert metrics["protocol"]["split"] == "test" and metrics["protocol"]["checkpoint_selected_on"] == "the val split"
    assert metrics["protocol"]["patches"] == sum(p["split"] == "test" for p in manifest["patches"])
    eroded = evaluate(cfg(boundary_ignore=1), path, tmp_path / "eroded", [], [], None).metrics
    assert 0 < np.sum(eroded["confusion_matrix"]) < cm.sum()


def test_per_scene_metrics_and_inputs_of_the_same_name(tmp_path, always_first):
    image = np.full((3, 24, 24), 50, np.uint8)
    a = write_tif(tmp_path / "a" / "scene.tif", image)
    b = write_tif(tmp_path / "b" / "scene.tif", image)
    ma = write_tif(tmp_path / "a" / "mask.tif", np.zeros((24, 24), np.uint8))  # all dark: OA 1
    mb = write_tif(tmp_path / "b" / "mask.tif", np.ones((24, 24), np.uint8))  # all bright: OA 0
    out = tmp_path / "out"
    metrics = evaluate(cfg(), checkpoint(tmp_path), out, [a, b], [ma, mb], None).metrics
    assert (out / "a_scene_pred.tif").is_file() and (out / "b_scene_pred.tif").is_file()
    assert (out / "vis" / "a_scene.png").is_file() and (out / "vis" / "b_scene.png").is_file()
    with open(out / "metrics_per_scene.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["scene"], r["input"], float(r["oa"]), int(r["pixels"])) for r in rows] == [
        ("a_scene", str(a), 1.0, 576),
        ("b_scene", str(b), 0.0, 576),
    ]
    assert metrics["oa"] == 0.5 and metrics["confusion_matrix"] == [[576, 0], [576, 0]]
    assert [s["scene"] for s in metrics["per_scene"]] == ["a_scene", "b_scene"]
    assert seg_eval.scene_names([a, b, a]) == ["a_scene", "b_scene", "a_scene-2"]
    assert seg_eval.scene_names([a, a, ma]) == ["scene", "scene-2", "mask"]


@pytest.mark.parametrize("fault", ["ctrl-c", "error"])
def test_a_stopped_multi_scene_eval_keeps_the_finished_scenes(tmp_path, always_first, monkeypatch, fault):
    scenes = [halves(tmp_path, name) for name in ("one", "two", "three")]
    original, calls = seg_eval._scene, []

    def stop_at_second(*args):
        calls.append(args)
        if len(calls) == 2:
            (args[4] / "two_pred.tif").write_bytes(b"half")  # the unfinished scene's file, to be removed
            raise KeyboardInterrupt if fault == "ctrl-c" else InputError("'two.tif' is damaged")
        return original(*args)

    monkeypatch.setattr(seg_eval, "_scene", stop_at_second)
    out = tmp_path / "out"
    images, masks = [s for s, _ in scenes], [m for _, m in scenes]
    with pytest.raises(Interrupted if fault == "ctrl-c" else InputError) as err:
        evaluate(cfg(), checkpoint(tmp_path), out, images, masks, None)
    message = str(err.value)
    assert "\n" not in message and f"'{out}'" in message and "scene 2 of 3" in message
    assert "1 finished scene is kept" in message and "incomplete.json" in message
    note = json.loads((out / "incomplete.json").read_text())
    assert note["finished"] == ["one"] and [m["scene"] for m in note["missing"]] == ["two", "three"]
    assert (out / "one_pred.tif").is_file() and not (out / "two_pred.tif").exists()
    assert not (out / "metrics.json").exists() and (out / "metrics_per_scene.csv").is_file()
    assert read_marker(out)["kind"] == "eval" and "one_pred.tif" in read_marker(out)["files"]
    monkeypatch.setattr(seg_eval, "_scene", original)  # the same command again completes and replaces it
    evaluate(cfg(), checkpoint(tmp_path), out, images, masks, None)
    assert not (out / "incomplete.json").exists() and (out / "three_pred.tif").is_file()
