"""eval.baselines on whole scenes (eval --input/--mask): the baselines fitted on the run's training split and scored
on exactly the pixels the model is scored on, with the forest's local statistics of the whole scene."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from ssmseg.config import build_config, dump_config
from ssmseg.data.datasets import PatchDataset
from ssmseg.data.io import open_source
from ssmseg.data.prepare import prepare
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments.evaluate import evaluate
from ssmseg.tasks.segmentation import evaluate as seg_eval
from ssmseg.tasks.segmentation.baseline import fit_baselines
from tests.data.helpers import prep_config
from tests.experiments.test_eval_protocol import AlwaysFirst
from tests.tasks.test_baseline import texture_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 96 x 96 texture scene (three classes, told apart by local statistics), its dataset, and a checkpoint
    whose metadata is the dataset's (the model itself is replaced by AlwaysFirst)."""
    root = tmp_path_factory.mktemp("scene")
    texture_scene(root, size=96)
    ds = prepare(prep_config(root, overlap=0.25, split={"block_size": 32, "folds": 2}), root / "ds").out
    manifest = json.loads((ds / "manifest.json").read_text())
    train = PatchDataset(ds, "train")
    state = {
        "config": yaml.safe_load(
            dump_config(build_config(explicit={"model": {"name": "unet", "width": 4, "depth": 1}}))
        ),
        "model": {},
        "in_channels": manifest["bands"],
        "num_classes": 3,
        "classes": manifest["classes"],
        "palette": ["#000080", "#FFFF00", "#00FF00"],
        "ignore_index": 255,
        "labels": manifest["labels"],
        "band_names": None,
        "normalization": {
            "offset": train.offset.ravel().tolist(),
            "scale": train.scale.ravel().tolist(),
            "method": manifest["normalize"],
            "stats_key": train.stats_key,
        },
        "class_counts_train": [1, 1, 1],
        "dataset": str(ds),
        "fold": None,
        "nodata": None,
    }
    path = root / "run" / "checkpoints" / "best.pt"
    ckpt.save(state, path)
    return root, ds, path


@pytest.fixture
def always_first(monkeypatch):
    monkeypatch.setattr(seg_eval, "load_model", lambda state, device: AlwaysFirst(state["num_classes"]))


def cfg(**ev):
    return build_config(
        explicit={
            "data": {"crop_size": 16},
            "eval": {"window": 16, "overlap": 0.25, "baselines": True, **ev},
            "baseline": {"trees": 10, "methods": ["majority", "logistic", "random_forest"]},
            "runtime": {"device": "cpu", "threads": 1},
        }
    )


def by_hand(ds, image_path, mask_path) -> dict[str, np.ndarray]:
    """The baselines' confusion matrices on the whole scene at once: fitted as eval fits them, the features of
    the whole normalised scene, every labelled pixel."""
    c = cfg()
    train = PatchDataset(ds, "train")
    fitted = fit_baselines(train, c.baseline, c.runtime.seed, None, ds, 1)
    with open_source(image_path) as src, open_source(mask_path) as msk:
        raw = src.read(0, 0, src.info.height, src.info.width)
        truth = msk.read(0, 0, src.info.height, src.info.width)[0].astype(np.int64)
    data, _ = seg_eval.Normaliser(train.offset.ravel(), train.scale.ravel())(raw)
    keep = np.flatnonzero(truth.reshape(-1) != 255)
    spectra, context = fitted.pixel_features(data, keep)
    labels = truth.reshape(-1)[keep]
    return {
        m: np.bincount(labels * 3 + fitted.predict(m, spectra, context), minlength=9).reshape(3, 3)
        for m in fitted.models
    }


def test_scene_baselines_score_the_models_pixels_with_whole_scene_features(scene, tmp_path, always_first):
    root, ds, path = scene
    image, mask = root / "img" / "t.tif", root / "msk" / "t.tif"
    metrics = evaluate(cfg(), path, tmp_path / "out", [image, image], [mask, mask], None).metrics
    model_cm = np.array(metrics["confusion_matrix"])
    base = metrics["baselines"]
    assert base["test_pixels"] == model_cm.sum() == 2 * 96 * 96
    expected = by_hand(ds, image, mask)
    for name, m in base["methods"].items():
        cm = np.array(m["confusion_matrix"])
        assert cm.sum(1).tolist() == model_cm.sum(1).tolist()  # the same pixels, the same truth
        # strips of 12 rows read with a halo: the forest's window statistics are those of the whole scene
        assert cm.tolist() == (2 * expected[name]).tolist(), name
    assert base["methods"]["random_forest"]["miou"] > 0.9  # local statistics tell c1 from c2
    assert base["methods"]["logistic"]["miou"] < base["methods"]["random_forest"]["miou"]
    with open(tmp_path / "out" / "metrics_per_scene.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["random_forest/miou"]) for r in rows] == [base["methods"]["random_forest"]["miou"]] * 2
    assert metrics["per_scene"][0]["baselines"]["logistic"]["oa"] == pytest.approx(base["methods"]["logistic"]["oa"])
    assert (
        metrics["per_scene"][1]["baselines"]["random_forest"]["confusion_matrix"] == expected["random_forest"].tolist()
    )


def test_scene_baselines_need_masks(scene, tmp_path, always_first):
    root, _, path = scene
    with pytest.raises(ConfigError, match=r"give a --mask for every --input, or leave eval\.baselines out"):
        evaluate(cfg(), path, tmp_path / "out", [root / "img" / "t.tif"], [], None)
    assert not (tmp_path / "out").exists()
    image, mask = root / "img" / "t.tif", root / "msk" / "t.tif"
    with pytest.raises(InputError, match=r"dataset '.*gone', which is not there; give it with --dataset"):
        evaluate(cfg(), path, tmp_path / "out", [image], [mask], tmp_path / "gone")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bands", [1, 2, 3, 4, 5])
def test_false_colour_of_any_band_count(bands):
    """The overview panel of a scene (and of test patches) is drawn for any number of bands; two bands once
    raised an IndexError after a whole scene had been predicted."""
    import torch

    from ssmseg.tasks.segmentation.visual import false_colour

    image = torch.arange(bands * 36, dtype=torch.float32).reshape(bands, 6, 6)
    rgb = false_colour(image)
    assert rgb.shape == (3, 6, 6) and rgb.dtype == torch.uint8
    assert rgb.max() == 255  # each channel stretched
