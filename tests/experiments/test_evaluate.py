"""ssmseg eval: seamless blending, TTA, georeferenced outputs, metrics with chance baselines, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
import yaml
from torch import nn

from ssmseg.config import build_config, dump_config
from ssmseg.data.io import ArraySource
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments.evaluate import evaluate
from ssmseg.models import build_model
from ssmseg.tasks.segmentation.evaluate import chance_baselines
from ssmseg.tasks.segmentation.inference import Normaliser, predict_batch, predict_scene
from tests.data.helpers import write_tif


def make_checkpoint(tmp_path, bands=3, name="unet", band_names=None):
    cfg = build_config(explicit={"model": {"name": name, "width": 8, "depth": 2}})
    model = build_model(cfg.model, bands, 2)
    state = {
        "config": yaml.safe_load(dump_config(cfg)),
        "model": model.state_dict(),
        "in_channels": bands,
        "num_classes": 2,
        "classes": ["dark", "bright"],
        "palette": ["#000080", "#FFFF00"],
        "ignore_index": 255,
        "labels": {"kind": "index", "values": {"0": 0, "1": 1}, "ignored": []},
        "band_names": band_names,
        "normalization": {"offset": [0.0] * bands, "scale": [100.0] * bands, "method": "zscore"},
        "class_counts_train": [3, 1],
        "dataset": str(tmp_path / "none"),
        "fold": None,
        "nodata": None,
    }
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt.save(state, path)
    return path


class WindowConstant(nn.Module):
    """Logits [mean of the window, 0] everywhere in the window: a constant per window."""

    def forward(self, x):
        v = x.mean((1, 2, 3), keepdim=True).expand(-1, 1, *x.shape[-2:])
        return torch.cat([v, torch.zeros_like(v)], 1)


def confidence_jumps(blend):
    scene = np.tile(np.linspace(-4, 4, 256, dtype=np.float32), (64, 1))[None]
    src = ArraySource("ramp", scene)
    strips = predict_scene(
        WindowConstant(),
        src,
        Normaliser(np.zeros(1, np.float32), np.ones(1, np.float32)),
        64,
        0.5,
        blend,
        8,
        False,
        torch.device("cpu"),
        2,
    )
    conf = np.concatenate([s.confidence for s in strips])
    return np.abs(np.diff(conf, axis=1)).max()


def test_gaussian_blending_leaves_no_seams():
    seams, smooth = confidence_jumps("mean"), confidence_jumps("gaussian")
    assert smooth < 0.25 * seams, (smooth, seams)


def test_tta_equals_plain_for_a_pointwise_model():
    model = nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(predict_batch(model, x, True), predict_batch(model, x, False), atol=1e-5, rtol=1e-5)
    rect = torch.randn(1, 3, 8, 12)
    torch.testing.assert_close(
        predict_batch(model, rect, True), predict_batch(model, rect, False), atol=1e-5, rtol=1e-5
    )


def test_chance_baselines_by_hand():
    cm = np.array([[2, 1], [0, 1]])
    base = chance_baselines(cm, None, ["a", "b"])
    assert base["majority_class"]["class"] == "a" and base["majority_class"]["oa"] == pytest.approx(0.75)
    assert base["class_prior_draw"]["oa"] == pytest.approx(0.75 * 0.75 + 0.25 * 0.25)


def test_scene_prediction_is_georeferenced_with_metrics(tmp_path):
    image = (np.random.default_rng(0).random((3, 80, 90)) * 200).astype(np.uint8)
    image[:, :5] = 0
    src = write_tif(tmp_path / "s.tif", image, nodata=0)
    mask = write_tif(tmp_path / "m.tif", (image[0] > 100).astype(np.uint8))
    cfg = build_config(
        explicit={"eval": {"window": 32, "overlap": 0.5, "save_png": True}, "runtime": {"device": "cpu"}}
    )
    result = evaluate(cfg, make_checkpoint(tmp_path), tmp_path / "out", [src], [mask], None)
    assert (tmp_path / "out" / "s_pred.png").is_file() and (tmp_path / "out" / "s_confidence.tif").is_file()
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out" / "s_pred.tif") as b:
        assert b.crs == a.crs and b.transform == a.transform and b.nodata == 255
        pred = b.read(1)
        assert (pred[:5] == 255).all() and set(np.unique(pred[5:])) <= {0, 1}
        assert b.colormap(1)[1][:3] == (255, 255, 0)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"oa", "miou", "kappa", "per_class", "protocol", "chance"} <= set(metrics)
    assert metrics["protocol"]["ignore_index"] == 255 and (tmp_path / "out" / "vis" / "s.png").is_file()
    assert (tmp_path / "out" / "metrics.csv").read_text().startswith("class,iou")
    assert result.metrics["chance"]["priors_from"] == "training class counts"


def test_small_scene_without_crs_is_padded_and_written_with_warnings(tmp_path):
    src = write_tif(tmp_path / "tiny.tif", np.ones((3, 20, 24), np.uint8), crs=None)
    cfg = build_config(explicit={"eval": {"window": 32}, "runtime": {"device": "cpu"}})
    result = evaluate(cfg, make_checkpoint(tmp_path), tmp_path / "out", [src], [], None)
    assert any("smaller than eval.window" in w for w in result.warnings)
    assert any("no CRS" in w for w in result.warnings)
    with rasterio.open(tmp_path / "out" / "tiny_pred.tif") as b:
        assert b.crs is None and b.shape == (20, 24)


@pytest.mark.parametrize("case", ["bands", "order", "corrupt", "model", "masks"])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, case):
    src = write_tif(tmp_path / "s.tif", np.ones((3, 40, 40), np.uint8))
    if case == "order":
        with rasterio.open(src, "r+") as ds:
            ds.descriptions = ("nir", "red", "green")
    checkpoint = make_checkpoint(
        tmp_path, bands=4 if case == "bands" else 3, band_names=["red", "green", "blue"] if case == "order" else None
    )
    if case == "corrupt":
        checkpoint.write_bytes(b"\x00" * 64)
    if case == "model":
        state = ckpt.load(checkpoint)
        state["config"]["model"]["name"] = "segnet"
        ckpt.save({k: v for k, v in state.items() if k != "format"}, checkpoint)
    cfg = build_config(explicit={"eval": {"window": 32}, "runtime": {"device": "cpu"}})
    masks = [src, src] if case == "masks" else []
    error = ConfigError if case in ("model", "masks") else InputError
    expected = {
        "bands": "4",
        "order": "band order",
        "corrupt": "corrupt",
        "model": "unknown model 'segnet'",
        "masks": "one --mask per --input",
    }[case]
    with pytest.raises(error, match=expected) as err:
        evaluate(cfg, checkpoint, tmp_path / "out", [src], masks, None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_rgb_byte_prediction_keeps_crs_and_transform(shared_data, tmp_path):
    src = shared_data / "geotiff" / "RGB.byte.tif"
    cfg = build_config(explicit={"eval": {"window": 128, "batch_size": 4}, "runtime": {"device": "cpu"}})
    evaluate(cfg, make_checkpoint(tmp_path), tmp_path / "out", [src], [], None)
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out" / "RGB.byte_pred.tif") as b:
        assert b.crs == a.crs and b.transform == a.transform and b.shape == a.shape
        collar = (a.read() == 0).all(0)
        assert (b.read(1)[collar] == 255).all()


def test_inputs_without_crs_are_said_once(tmp_path):
    from ssmseg.tasks.segmentation.evaluate import _one_crs_note

    tail = " has no CRS: the prediction is written without georeference"
    notes = ["'a.tif' is smaller than eval.window 32", *(f"'s{i}.jpg'{tail}" for i in range(18))]
    said = _one_crs_note(notes)
    assert said == [
        notes[0],
        "18 inputs have no CRS ('s0.jpg', 's1.jpg', 's2.jpg' and 15 more): their predictions "
        "are written without georeference",
    ]
    assert _one_crs_note(notes[:2]) == notes[:2]  # one input: its own line, as before
