"""Segmentation evaluation: a trained model on a prepared dataset's test split, or on whole raw scenes.

Scenes are predicted by sliding windows with blended logits (``inference.py``) and written block by block
as GeoTIFFs with the source's CRS and transform, a colour table, and nodata where the input had no valid
data. Metrics come from one confusion matrix, beside chance baselines computed on the same pixels.
``ssmseg eval`` (``experiments/evaluate.py``) owns the output folder and calls ``run`` here.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmseg.config import Config
from ssmseg.config.schema import ModelConfig
from ssmseg.data.io import Source, open_source, raster_env
from ssmseg.data.labels import LabelMapping, parse_color
from ssmseg.errors import InputError
from ssmseg.experiments import guards
from ssmseg.models import build_model
from ssmseg.progress import progress_bar
from ssmseg.tasks.results import EvalResult
from ssmseg.tasks.segmentation.figures import save_confusion, save_panel
from ssmseg.tasks.segmentation.inference import Normaliser, predict_batch, predict_scene, window_starts
from ssmseg.tasks.segmentation.metrics import metrics_from_confusion
from ssmseg.tasks.segmentation.visual import false_colour


def load_model(state: dict[str, Any], device: torch.device) -> torch.nn.Module:
    """The checkpoint's model, on ``device``; an unknown model name lists the valid ones."""
    try:
        model_cfg = ModelConfig.model_validate({**state["config"]["model"], "encoder_weights": None})
    except Exception as exc:
        raise InputError(f"the checkpoint's model settings are not valid here ({exc}); use a matching ssmseg") from exc
    model = build_model(model_cfg, state["in_channels"], state["num_classes"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise InputError(f"the checkpoint's weights do not fit model '{model_cfg.name}' ({str(exc)[:120]})") from exc
    return model.to(device).eval()


def chance_baselines(cm: np.ndarray, train_counts: list[int] | None, classes: list[str]) -> dict[str, Any]:
    """Expected metrics of two predictors that ignore the input, on the same pixels: always the majority
    class (of the training data when known), and drawing each pixel's class from the class priors."""
    support = cm.sum(1).astype(np.float64)
    prior = np.asarray(train_counts if train_counts and sum(train_counts) else support, dtype=np.float64)
    prior = prior / prior.sum()
    majority = np.zeros_like(cm, dtype=np.float64)
    majority[:, int(prior.argmax())] = support
    drawn = np.outer(support, prior)  # expected counts: truth i predicted j with probability prior_j
    pick = ("oa", "miou", "mean_f1", "kappa")
    return {
        "majority_class": {"class": classes[int(prior.argmax())],
                           **{k: metrics_from_confusion(majority, classes)[k] for k in pick}},
        "class_prior_draw": {k: metrics_from_confusion(drawn, classes)[k] for k in pick},
        "priors_from": "training class counts" if train_counts and sum(train_counts) else "evaluated pixels",
    }  # fmt: skip


def _mapping(state: dict[str, Any]) -> LabelMapping:
    lab = state["labels"]
    return LabelMapping(state["classes"], [parse_color(c) for c in state["palette"]], state["ignore_index"],
                        lab["kind"], {int(k): v for k, v in lab["values"].items()}, set(lab["ignored"]))  # fmt: skip


def _check_bands(src: Source, state: dict[str, Any]) -> None:
    if src.info.bands != state["in_channels"]:
        raise InputError(
            f"'{src.info.path}' has {src.info.bands} bands but the model was trained on {state['in_channels']}; "
            "give a scene with the training bands in the training order"
        )
    names, trained = src.info.descriptions, state.get("band_names")
    if names and trained and list(names) != list(trained):
        raise InputError(
            f"'{src.info.path}' band order {names[:4]}... differs from training {trained[:4]}...; reorder the bands"
        )


def _write_metrics(out: Path, cm: np.ndarray, state: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    classes = state["classes"]
    metrics = metrics_from_confusion(cm, classes)
    metrics["confusion_matrix"] = cm.astype(int).tolist()
    metrics["protocol"] = {"ignore_index": state["ignore_index"], "classes": classes,
                           "averaging": "macro over classes present in truth or prediction; OA and kappa micro",
                           **protocol}  # fmt: skip
    metrics["chance"] = chance_baselines(cm, state.get("class_counts_train"), classes)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "iou", "precision", "recall", "f1", "support"])
        for name, m in metrics["per_class"].items():
            w.writerow([name, *(m[k] for k in ("iou", "precision", "recall", "f1", "support"))])
        w.writerow([])
        for key in ("oa", "miou", "mean_f1", "kappa"):
            w.writerow([key, metrics[key]])
        for name, base in metrics["chance"].items():
            if isinstance(base, dict):
                for key in ("oa", "miou"):
                    w.writerow([f"chance/{name}/{key}", base[key]])
    save_confusion(out / "vis" / "confusion.png", cm, classes)
    return metrics


def run(
    cfg: Config,
    state: dict[str, Any],
    device: torch.device,
    out: Path,
    inputs: list[Path],
    masks: list[Path],
    dataset: Path | None,
) -> EvalResult:
    """Evaluate the checkpoint ``state`` into the (new, empty) folder ``out``."""
    model = load_model(state, device)
    with raster_env():
        if inputs:
            return _scenes(cfg, state, model, device, out, inputs, masks)
        return _test_split(cfg, state, model, device, out, dataset)


def _test_split(cfg: Config, state, model, device, out: Path, dataset: Path | None) -> EvalResult:
    from ssmseg.data.datasets import PatchDataset

    folder = Path(dataset or state["dataset"])
    ds = PatchDataset(folder, "test", state.get("fold"))
    if ds.bands != state["in_channels"]:
        raise InputError(f"'{folder}' has {ds.bands} bands, the model {state['in_channels']}; use its own dataset")
    guards.check_test_data(folder, ds.manifest, state)
    n = state["num_classes"]
    cm = torch.zeros(n, n, dtype=torch.int64)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval.batch_size)
    shown = 0
    with progress_bar("test patches", len(loader)) as advance, torch.no_grad():
        for batch in loader:
            pred = predict_batch(model, batch["image"].to(device), cfg.eval.tta).argmax(1).cpu()
            keep = batch["mask"] != state["ignore_index"]
            cm += torch.bincount(batch["mask"][keep] * n + pred[keep], minlength=n * n).reshape(n, n)
            for i in range(min(len(pred), 4 - shown)):
                rgb = false_colour(batch["image"][i]).permute(1, 2, 0).numpy()
                save_panel(out / "vis" / f"test_{shown}.png", rgb, batch["mask"][i].numpy(), pred[i].numpy(),
                           state["classes"], state["palette"], state["ignore_index"])  # fmt: skip
                shown += 1
            advance()
    metrics = _write_metrics(out, cm.numpy(), state, {"split": "test", "dataset": str(folder), "tta": cfg.eval.tta})
    return EvalResult(out, metrics, ["metrics.json", "metrics.csv", "vis/"])


def _scenes(cfg: Config, state, model, device, out: Path, inputs, masks) -> EvalResult:
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    n, ignore = state["num_classes"], state["ignore_index"]
    norm_state = state["normalization"]
    notes: list[str] = []
    cm = np.zeros((n, n), np.int64)
    mapping = _mapping(state) if masks else None
    colormap = {i: (*parse_color(c), 255) for i, c in enumerate(state["palette"])}
    for k, path in enumerate(inputs):
        src = open_source(path)
        mask = open_source(masks[k]) if masks else None
        _check_bands(src, state)
        info = src.info
        if mask is not None and (mask.info.height, mask.info.width) != (info.height, info.width):
            raise InputError(f"mask '{mask.info.path}' is not the size of '{info.path}'; give the matching mask")
        if min(info.height, info.width) < cfg.eval.window:
            notes.append(f"'{path}' ({info.height}x{info.width}) is smaller than eval.window {cfg.eval.window}: "
                         "reflect-padded to one window")  # fmt: skip
        if info.crs is None:
            notes.append(f"'{path}' has no CRS: the prediction is written without georeference")
        profile = {"driver": "GTiff", "height": info.height, "width": info.width, "count": 1, "dtype": "uint8",
                   "nodata": 255, "tiled": True, "blockxsize": 256, "blockysize": 256,
                   "compress": "deflate"}  # fmt: skip
        if info.crs is not None:
            profile.update(crs=info.crs, transform=rasterio.Affine(*info.transform))
        stem = Path(path).stem
        norm = Normaliser(np.array(norm_state["offset"], np.float32), np.array(norm_state["scale"], np.float32),
                          info.nodata if info.nodata is not None else state.get("nodata"))  # fmt: skip
        stride = max(1, round(cfg.eval.window * (1 - cfg.eval.overlap)))
        rows = len(window_starts(info.height, min(cfg.eval.window, info.height), stride))
        with (
            warnings.catch_warnings(),
            rasterio.open(out / f"{stem}_pred.tif", "w", **profile) as dst,
            rasterio.open(out / f"{stem}_confidence.tif", "w", **{**profile, "dtype": "float32", "nodata": -1}) as conf,
            progress_bar(f"predicting {stem}", rows) as advance,
        ):
            warnings.simplefilter("ignore")
            dst.write_colormap(1, colormap)
            for strip in predict_scene(model, src, norm, cfg.eval.window, cfg.eval.overlap, cfg.eval.blend,
                                       cfg.eval.batch_size, cfg.eval.tta, device, n, advance):  # fmt: skip
                labels = np.where(strip.valid, strip.labels, 255).astype(np.uint8)
                h = labels.shape[0]
                window = Window(0, strip.row0, info.width, h)
                dst.write(labels[None], window=window)
                conf.write(np.where(strip.valid, strip.confidence, -1).astype(np.float32)[None], window=window)
                if mask is not None:
                    truth, _ = mapping.decode(mask.read(strip.row0, 0, h, info.width))
                    keep = (truth != ignore) & strip.valid
                    cm += np.bincount(truth[keep].astype(np.int64) * n + labels[keep], minlength=n * n).reshape(n, n)
        _overview(out, stem, src, out / f"{stem}_pred.tif", mask, mapping, state)
        if cfg.eval.save_png:  # GDAL streams the paletted GeoTIFF into a PNG keeping its colour table
            rasterio.shutil.copy(out / f"{stem}_pred.tif", out / f"{stem}_pred.png", driver="PNG")
        src.close()
        if mask is not None:
            mask.close()
    metrics = None
    if masks and not cm.sum():
        raise InputError(f"the masks ({', '.join(map(str, masks))}) hold no labelled pixel where the scenes have data; "
                         "metrics would be empty: check the masks, or leave --mask out to predict only")  # fmt: skip
    if masks:
        metrics = _write_metrics(out, cm, state, {"split": "scenes", "inputs": [str(p) for p in inputs],
                                                  "tta": cfg.eval.tta, "blend": cfg.eval.blend})  # fmt: skip
    return EvalResult(out, metrics, [f"{Path(p).stem}_pred.tif" for p in inputs], notes)


def _overview(out: Path, stem: str, src: Source, pred_path: Path, mask, mapping, state) -> None:
    """A decimated panel of the whole scene (at most ~1024 px wide), read without loading it whole."""
    import rasterio

    info = src.info
    step = max(1, int(np.ceil(max(info.height, info.width) / 1024)))
    rows, cols = np.arange(0, info.height, step), np.arange(0, info.width, step)
    image = np.stack([src.read(int(r), 0, 1, info.width)[:, 0, cols] for r in rows], axis=1)
    rgb = false_colour(torch.from_numpy(image.astype(np.float32))).permute(1, 2, 0).numpy()
    with rasterio.open(pred_path) as p:
        pred = p.read(1, out_shape=(len(rows), len(cols)), resampling=rasterio.enums.Resampling.nearest)
    truth = None
    if mask is not None:
        raw = np.stack([mask.read(int(r), 0, 1, info.width)[:, 0, cols] for r in rows], axis=1)
        truth = mapping.decode(raw)[0]
    save_panel(out / "vis" / f"{stem}.png", rgb, truth, pred, state["classes"], state["palette"], state["ignore_index"])
