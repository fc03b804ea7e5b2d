"""Segmentation evaluation: a trained model on a prepared dataset's test split, or on whole raw scenes.

Scenes are predicted by sliding windows with blended logits (``inference.py``) and written block by block
as GeoTIFFs with the source's CRS and transform, a colour table, and nodata where the input had no valid
data. Metrics come from one confusion matrix, beside chance baselines computed on the same pixels.
``ssmseg eval`` (``experiments/evaluate.py``) owns the output folder and calls ``run`` here.
"""

from __future__ import annotations

import contextlib
import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmseg import geotiff
from ssmseg.config import Config
from ssmseg.config.schema import ModelConfig
from ssmseg.data.datasets import PatchDataset, describe_part, describe_selection, select
from ssmseg.data.io import Source, open_source, raster_env
from ssmseg.data.labels import LabelMapping, parse_color
from ssmseg.errors import ConfigError, InputError
from ssmseg.models import build_model
from ssmseg.progress import progress_bar
from ssmseg.tasks.results import EvalResult, PartialResult
from ssmseg.tasks.segmentation.checks import check_test_data
from ssmseg.tasks.segmentation.figures import save_confusion, save_panel
from ssmseg.tasks.segmentation.inference import Normaliser, owned_mask, predict_batch, predict_scene, window_starts
from ssmseg.tasks.segmentation.metrics import boundary_band, metrics_from_confusion
from ssmseg.tasks.segmentation.scene_metrics import PICK, write_per_scene
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


def chance_baselines(
    cm: np.ndarray, train_counts: list[int] | None, classes: list[str], exclude: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Expected metrics of predictors that ignore the input, on the same pixels: always the majority class
    (of the training data when known: ``majority_class``), drawing each pixel's class from the class priors,
    and always the scored pixels' own majority class (``scored_majority``: its OA is the real floor of OA)."""
    support = cm.sum(1).astype(np.float64)
    trained = bool(train_counts and sum(train_counts))
    prior = np.asarray(train_counts if trained else support, dtype=np.float64)
    prior = prior / prior.sum()
    pick = ("oa", "miou", "mean_f1", "kappa")

    def always(cls: int) -> dict[str, Any]:
        pred = np.zeros_like(cm, dtype=np.float64)
        pred[:, cls] = support
        return {"class": classes[cls], **{k: metrics_from_confusion(pred, classes, exclude)[k] for k in pick}}

    drawn = np.outer(support, prior)  # expected counts: truth i predicted j with probability prior_j
    return {
        "majority_class": {**always(int(prior.argmax())), "from": "training" if trained else "evaluated pixels"},
        "class_prior_draw": {k: metrics_from_confusion(drawn, classes, exclude)[k] for k in pick},
        "priors_from": "training class counts" if trained else "evaluated pixels",
        "scored_majority": {**always(int(support.argmax())), "from": "evaluated pixels"},
    }


def _mapping(state: dict[str, Any]) -> LabelMapping:
    lab = state["labels"]
    return LabelMapping(
        state["classes"],
        [parse_color(c) for c in state["palette"]],
        state["ignore_index"],
        lab["kind"],
        {int(k): v for k, v in lab["values"].items()},
        set(lab["ignored"]),
    )


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


def metric_protocol(cfg: Config, state: dict[str, Any]) -> dict[str, Any]:
    """The metric protocol of ``eval.*`` (checked against the model's classes; a bad name is exit 2)."""
    classes, exclude = list(state["classes"]), list(cfg.eval.exclude_classes)
    unknown = [c for c in exclude if c not in classes]
    if unknown:
        raise ConfigError(
            f"eval.exclude_classes: {', '.join(map(repr, unknown))} "
            f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of this model; its "
            f"classes are {', '.join(classes)}"
        )
    if exclude and set(exclude) >= set(classes):
        raise ConfigError("eval.exclude_classes leaves no class in the mean; exclude fewer classes")
    radius = cfg.eval.boundary_ignore
    return {
        "ignore_index": state["ignore_index"],
        "classes": classes,
        "averaging": "macro over classes present in truth or prediction (less exclude_classes); OA and kappa "
        "micro over every evaluated pixel",
        "exclude_classes": exclude,
        "mean_over": [c for c in classes if c not in exclude],
        "boundary_ignore": radius,
        "boundary": (
            f"pixels within {radius} px (Euclidean) of a pixel of another class in the truth are left "
            "out of every metric"
        )
        if radius
        else "off",
    }


def _metrics(cm: np.ndarray, state: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    metrics = metrics_from_confusion(cm, state["classes"], protocol["exclude_classes"])
    metrics["confusion_matrix"] = cm.astype(int).tolist()
    metrics["protocol"] = protocol
    metrics["chance"] = chance_baselines(
        cm, state.get("class_counts_train"), state["classes"], protocol["exclude_classes"]
    )
    return metrics


def _write_metrics(
    out: Path, cm: np.ndarray, state: dict[str, Any], protocol: dict[str, Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    classes = state["classes"]
    metrics = {**_metrics(cm, state, protocol), **(extra or {})}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "iou", "precision", "recall", "f1", "support"])
        for name, m in metrics["per_class"].items():
            w.writerow([name, *(m[k] for k in ("iou", "precision", "recall", "f1", "support"))])
        w.writerow([])
        for key in PICK:
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
    return run_model(cfg, state, load_model(state, device), device, out, inputs, masks, dataset)


def run_model(
    cfg: Config,
    state: dict[str, Any],
    model: Any,
    device: torch.device,
    out: Path,
    inputs: list[Path],
    masks: list[Path],
    dataset: Path | None,
) -> EvalResult:
    """Evaluate any callable model (a module, or an exported model's runtime) with the checkpoint's metadata."""
    protocol = metric_protocol(cfg, state)
    with raster_env():
        if inputs:
            return _scenes(cfg, state, model, device, out, inputs, masks, protocol, dataset)
        return _test_split(cfg, state, model, device, out, dataset, protocol)


def patch_confusion(
    cfg: Config, state: dict[str, Any], model, device, ds, label: str, vis: Path | None = None
) -> np.ndarray:
    """The confusion matrix of ``model`` on every patch of ``ds`` under the eval protocol (TTA, boundary
    band), each labelled pixel once (the region each patch owns); with ``vis``, panels of the first four
    patches."""
    n, ignore, radius = state["num_classes"], state["ignore_index"], cfg.eval.boundary_ignore
    cm = torch.zeros(n, n, dtype=torch.int64)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval.batch_size)
    patches = ds.manifest["patches"]
    shown, seen = 0, 0
    with progress_bar(label, len(loader)) as advance, torch.no_grad():
        for batch in loader:
            pred = predict_batch(model, batch["image"].to(device), cfg.eval.tta).argmax(1).cpu()
            truth = batch["mask"]
            own = np.stack(
                [owned_mask(patches[ds.indices[seen + i]], tuple(truth.shape[1:])) for i in range(len(truth))]
            )
            seen += len(truth)
            keep = (truth != ignore) & ~torch.from_numpy(boundary_band(truth.numpy(), radius, ignore))
            keep &= torch.from_numpy(own)
            cm += torch.bincount(truth[keep] * n + pred[keep], minlength=n * n).reshape(n, n)
            for i in range(min(len(pred), 4 - shown) if vis is not None else 0):
                rgb = false_colour(batch["image"][i]).permute(1, 2, 0).numpy()
                save_panel(
                    vis / f"test_{shown}.png",
                    rgb,
                    truth[i].numpy(),
                    pred[i].numpy(),
                    state["classes"],
                    state["palette"],
                    ignore,
                )
                shown += 1
            advance()
    return cm.numpy()


def selected_on(state: dict[str, Any]) -> str:
    """The data that selected the checkpoint (best.pt) of a run or cv fold."""
    rule = ((state.get("config") or {}).get("train") or {}).get("select", "best")
    return state.get("selected_on") or describe_selection(rule, state.get("fold"))


def _test_split(cfg: Config, state, model, device, out: Path, dataset: Path | None, protocol) -> EvalResult:
    folder = Path(dataset or state["dataset"])
    fold = state.get("fold")
    ds = PatchDataset(folder, "test", fold)
    if ds.bands != state["in_channels"]:
        raise InputError(f"'{folder}' has {ds.bands} bands, the model {state['in_channels']}; use its own dataset")
    check_test_data(folder, ds.manifest, state)
    chosen = set(select(ds.manifest, "val", fold)[0]) | set(select(ds.manifest, "train", fold)[0])
    if chosen & set(ds.indices):  # by construction never; a guard against a changed split rule
        raise InputError(
            f"'{folder}': test patches are also training or validation patches of this run; prepare the dataset again"
        )
    cm = patch_confusion(cfg, state, model, device, ds, "test patches", out / "vis")
    scored = {
        "split": "test",
        "dataset": str(folder),
        "patches": len(ds),
        "tta": cfg.eval.tta,
        "checkpoint_selected_on": selected_on(state),
    }
    metrics = _write_metrics(out, cm, state, {**scored, **protocol})
    if cfg.eval.baselines:  # the classical yardstick on the same test pixels, fitted on the same training part
        from ssmseg.tasks.segmentation.baseline import baseline_scores

        metrics["baselines"] = baseline_scores(cfg, folder, fold, scored="test")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return EvalResult(out, metrics, ["metrics.json", "metrics.csv", "vis/"])


def score_heldout(cfg: Config, state: dict[str, Any], dataset: Path, fold: int, device: torch.device) -> dict[str, Any]:
    """Cross-validation: the checkpoint of fold ``fold`` (selected on the val split outside the fold) scored once
    on the fold itself, with the fold's own normalisation statistics and the eval protocol."""
    protocol = metric_protocol(cfg, state)
    ds = PatchDataset(dataset, "heldout", fold)
    if ds.stats_key != (state.get("normalization") or {}).get("stats_key"):
        raise InputError(
            f"the checkpoint of fold {fold} was normalised with "
            f"'{(state.get('normalization') or {}).get('stats_key')}', not the fold's own "
            f"'{ds.stats_key}'; train the fold again"
        )
    cm = patch_confusion(cfg, state, load_model(state, device), device, ds, f"scoring fold {fold}")
    metrics = _metrics(cm, state, protocol)
    return {
        "metrics": {k: metrics[k] for k in PICK},
        "per_class_iou": {c: m["iou"] for c, m in metrics["per_class"].items()},
        "confusion_matrix": metrics["confusion_matrix"],
        "pixels": int(cm.sum()),
        "items": len(ds),
        "scored_on": describe_part("heldout", fold),
        "selected_on": selected_on(state),
        "protocol": {**protocol, "tta": cfg.eval.tta},
    }


def scene_names(inputs: list[Path]) -> list[str]:
    """A distinct output name per input: its file stem, prefixed by as many parent folders as it takes to tell
    apart inputs of the same name (``a/scene.tif``, ``b/scene.tif`` -> ``a_scene``, ``b_scene``), then -2, -3."""
    paths = [Path(p).resolve() for p in inputs]
    names = [p.stem for p in paths]
    for stem in {n for n in names if names.count(n) > 1}:
        group = [i for i, n in enumerate(names) if n == stem]
        if len({paths[i] for i in group}) < 2:
            continue  # one file given twice: -2 below
        for depth in range(1, max(len(paths[i].parts) for i in group)):
            tried = ["_".join([*paths[i].parent.parts[1:][-depth:], stem]) for i in group]
            if len(set(tried)) == len({paths[i] for i in group}):  # one name per distinct file
                for i, name in zip(group, tried, strict=True):
                    names[i] = name
                break
    taken: set[str] = set()
    for i, name in enumerate(names):
        k, unique = 1, name
        while unique in taken:
            k += 1
            unique = f"{name}-{k}"
        names[i] = unique
        taken.add(unique)
    return names


def _check_scene(cfg: Config, state, path: Path, mask_path: Path | None, notes: list[str]) -> None:
    """What can be checked before any scene is predicted: bands, band order and the mask's size."""
    with open_source(path) as src:
        _check_bands(src, state)
        info = src.info
        if mask_path is not None:
            with open_source(mask_path) as mask:
                if (mask.info.height, mask.info.width) != (info.height, info.width):
                    raise InputError(
                        f"mask '{mask.info.path}' is not the size of '{info.path}'; give the matching mask"
                    )
        if min(info.height, info.width) < cfg.eval.window:
            notes.append(
                f"'{path}' ({info.height}x{info.width}) is smaller than eval.window {cfg.eval.window}: "
                "reflect-padded to one window"
            )
        if info.crs is None:
            notes.append(f"'{path}' has no CRS: the prediction is written without georeference")


def _one_crs_note(notes: list[str]) -> list[str]:
    """Several inputs without a CRS (photographs, PNG/JPEG tiles) are said once, not once per scene."""
    tail = " has no CRS: the prediction is written without georeference"
    plain = [n[: -len(tail)] for n in notes if n.endswith(tail)]
    if len(plain) < 2:
        return notes
    shown = ", ".join(plain[:3]) + (f" and {len(plain) - 3} more" if len(plain) > 3 else "")
    return [n for n in notes if not n.endswith(tail)] + [
        f"{len(plain)} inputs have no CRS ({shown}): their predictions are written without georeference"
    ]


def scene_files(name: str, save_png: bool) -> list[str]:
    return [
        f"{name}_pred.tif",
        f"{name}_confidence.tif",
        *([f"{name}_pred.png"] if save_png else []),
        f"vis/{name}.png",
    ]


def _scenes(cfg: Config, state, model, device, out: Path, inputs, masks, protocol, dataset=None) -> EvalResult:
    names = scene_names(inputs)
    notes: list[str] = []
    for k, path in enumerate(inputs):
        _check_scene(cfg, state, path, masks[k] if masks else None, notes)
    notes = _one_crs_note(notes)
    baselines = None
    if cfg.eval.baselines:  # the classical yardstick on the same scene pixels, fitted on the run's training split
        if not masks:
            raise ConfigError(
                "eval.baselines scores the baselines on the pixels of the masks; give a --mask for every --input, "
                "or leave eval.baselines out"
            )
        from ssmseg.tasks.segmentation.scene_baseline import SceneBaselines

        baselines = SceneBaselines(cfg, state, Path(dataset or state["dataset"]))
    done: list[dict[str, Any]] = []
    try:
        for k, path in enumerate(inputs):
            mask = masks[k] if masks else None
            cm, unknown = _scene(cfg, state, model, device, out, path, mask, names[k], baselines)
            if unknown:
                notes.append(_unknown_note(masks[k], unknown, state))
            done.append({"scene": names[k], "input": str(path), "mask": str(mask) if masks else None, "confusion": cm})
            if baselines is not None:
                done[-1]["baselines"] = baselines.take()
    except BaseException as exc:
        if not done:
            raise
        for name in scene_files(names[len(done)], cfg.eval.save_png):  # the scene that did not finish
            (out / name).unlink(missing_ok=True)
        missing = [{"scene": names[k], "input": str(p)} for k, p in enumerate(inputs) if k >= len(done)]
        if masks:
            write_per_scene(out, done, state, protocol)
        stopped = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        note = {
            "complete": False,
            "stopped_by": stopped,
            "finished": [d["scene"] for d in done],
            "finished_inputs": [d["input"] for d in done],
            "missing": missing,
            "pooled_metrics": "not written: they would cover only the finished scenes (see metrics_per_scene.csv)"
            if masks
            else None,
        }
        (out / "incomplete.json").write_text(json.dumps(note, indent=1))
        raise PartialResult([d["scene"] for d in done], [m["scene"] for m in missing], exc) from exc
    metrics = None
    cm = sum((d["confusion"] for d in done), np.zeros((state["num_classes"],) * 2, np.int64))
    if masks and not cm.sum():
        raise InputError(
            f"the masks ({', '.join(map(str, masks))}) hold no labelled pixel where the scenes have data; "
            "metrics would be empty: check the masks, or leave --mask out to predict only"
        )
    outputs = [f"{n}_pred.tif" for n in names]
    if masks:
        per_scene = write_per_scene(out, done, state, protocol)
        scored = {
            "split": "scenes",
            "inputs": [str(p) for p in inputs],
            "tta": cfg.eval.tta,
            "blend": cfg.eval.blend,
            "outputs": dict(zip(names, map(str, inputs), strict=True)),
        }
        extra = {"per_scene": per_scene}
        if baselines is not None:
            extra["baselines"] = baselines.summary([d["baselines"] for d in done])
        metrics = _write_metrics(out, cm, state, {**scored, **protocol}, extra)
        outputs.append("metrics_per_scene.csv")
    return EvalResult(out, metrics, outputs, notes)


def _unknown_note(mask: Path, unknown: dict[int, int], state: dict[str, Any]) -> str:
    total = sum(unknown.values())
    values = ", ".join(f"{v}: {n} px" for v, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
    return (
        f"mask '{mask}': {total} pixels hold values that are none of the model's classes ({values}); they are "
        f"left out of the metrics like ignored pixels; the model's classes are {', '.join(state['classes'])} "
        f"(values {', '.join(map(str, sorted(int(v) for v in state['labels']['values'])))})"
    )


def _scene(
    cfg: Config, state, model, device, out: Path, path: Path, mask_path: Path | None, name: str, baselines=None
) -> tuple[np.ndarray, dict[int, int]]:
    """Predict one scene into ``<name>_pred.tif`` (and confidence, PNG, overview); its confusion matrix and the
    mask's pixel counts of values that are no class. ``baselines`` (``SceneBaselines``) scores the same pixels."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    n, ignore, radius = state["num_classes"], state["ignore_index"], cfg.eval.boundary_ignore
    norm_state = state["normalization"]
    cm = np.zeros((n, n), np.int64)
    unknown: dict[int, int] = {}
    mapping = _mapping(state) if mask_path is not None else None
    colormap = {i: (*parse_color(c), 255) for i, c in enumerate(state["palette"])}
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_source(path))
        mask = stack.enter_context(open_source(mask_path)) if mask_path is not None else None
        info = src.info
        profile = {
            "driver": "GTiff",
            "height": info.height,
            "width": info.width,
            "count": 1,
            "dtype": "uint8",
            "nodata": 255,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        if info.crs is not None:
            profile.update(crs=info.crs, transform=rasterio.Affine(*info.transform))
        norm = Normaliser(
            np.array(norm_state["offset"], np.float32),
            np.array(norm_state["scale"], np.float32),
            info.nodata if info.nodata is not None else state.get("nodata"),
        )
        stride = max(1, round(cfg.eval.window * (1 - cfg.eval.overlap)))
        rows = len(window_starts(info.height, min(cfg.eval.window, info.height), stride))
        with (
            warnings.catch_warnings(),
            geotiff.written(out / f"{name}_pred.tif"),
            geotiff.written(out / f"{name}_confidence.tif"),
            rasterio.open(out / f"{name}_pred.tif", "w", **profile) as dst,
            rasterio.open(out / f"{name}_confidence.tif", "w", **{**profile, "dtype": "float32", "nodata": -1}) as conf,
            progress_bar(f"predicting {name}", rows) as advance,
        ):
            warnings.simplefilter("ignore")
            dst.write_colormap(1, colormap)
            for strip in predict_scene(
                model,
                src,
                norm,
                cfg.eval.window,
                cfg.eval.overlap,
                cfg.eval.blend,
                cfg.eval.batch_size,
                cfg.eval.tta,
                device,
                n,
                advance,
            ):
                labels = np.where(strip.valid, strip.labels, 255).astype(np.uint8)
                h = labels.shape[0]
                window = Window(0, strip.row0, info.width, h)
                dst.write(labels[None], window=window)
                conf.write(np.where(strip.valid, strip.confidence, -1).astype(np.float32)[None], window=window)
                if mask is not None:
                    top, bottom = max(0, strip.row0 - radius), min(info.height, strip.row0 + h + radius)
                    raw = mask.read(top, 0, bottom - top, info.width)
                    halo, _ = mapping.decode(raw)  # rows around: the band
                    inner = slice(strip.row0 - top, strip.row0 - top + h)
                    for value, count in mapping.decode(raw[:, inner])[1].items():  # each row counted once
                        unknown[value] = unknown.get(value, 0) + count
                    truth, band = halo[inner], boundary_band(halo, radius, ignore)[inner]
                    keep = (truth != ignore) & strip.valid & ~band
                    cm += np.bincount(truth[keep].astype(np.int64) * n + labels[keep], minlength=n * n).reshape(n, n)
                    if baselines is not None:
                        baselines.add(src, norm, strip.row0, truth, keep)
        _overview(out, name, src, out / f"{name}_pred.tif", mask, mapping, state)
        if cfg.eval.save_png:  # GDAL streams the paletted GeoTIFF into a PNG keeping its colour table
            with geotiff.written(out / f"{name}_pred.png"):
                rasterio.shutil.copy(out / f"{name}_pred.tif", out / f"{name}_pred.png", driver="PNG")
    return cm, unknown


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
