"""What a segmentation dataset must hold before a run trains, a cv fold is scored or a test split is
evaluated, and what an evaluation of whole scenes should warn about."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ssmseg.config import Config
from ssmseg.config.loading import validate_layers
from ssmseg.data import manifest as mf
from ssmseg.data.datasets import describe_part, select
from ssmseg.data.io import sha256_file
from ssmseg.data.splits import untrainable
from ssmseg.errors import ConfigError, InputError


def _parts(dataset: Path, manifest: dict[str, Any], fold: int | None, heldout: bool = False) -> dict[str, list[int]]:
    """Labelled pixels per class of the part trained on, the part that selects the checkpoint, and (cv scoring)
    the held-out fold."""
    counts = manifest["class_counts"]
    if fold is None:
        return {"training": counts["train"], "validation": counts["val"]}
    from ssmseg.data.datasets import PatchDataset

    parts = {"training": "train", "validation": "val", **({"held-out": "heldout"} if heldout else {})}
    return {name: PatchDataset(dataset, part, fold).class_counts() for name, part in parts.items()}


def check_training_data(
    dataset: Path, manifest: dict[str, Any], fold: int | None, heldout: bool = False
) -> dict[str, list[int]]:
    """Every part a run (or cv fold) reads holds a labelled pixel; returns the parts' labelled pixels per class."""
    names = {"training": "train", "validation": "val", "held-out": "heldout"}
    parts = _parts(dataset, manifest, fold, heldout)
    for part, counts in parts.items():
        if not sum(counts):
            where = "" if fold is None else f" of cv fold {fold}"
            what = "" if fold is None else f"; they are: {describe_part(names[part], fold)}"
            raise InputError(
                f"'{dataset}': the {part} patches{where} hold no labelled pixel (every label is ignored or "
                f"nodata{what}), so nothing can be learned or measured; check prep.classes/class_map/ignore_values "
                "and the masks, or prepare the dataset again with a larger val share (prep.split.ratios), smaller "
                "prep.split.block_size or fewer folds"
            )
    return parts


def prepare(cfg: Config, dataset: Path, manifest: dict[str, Any], fold: int | None) -> Config:
    """Check the dataset; the config that will run: a prepared dataset fixes the crop size and the prep
    settings (recorded as they were)."""
    check_training_data(dataset, manifest, fold)
    if cfg.data.dataset is None:
        return cfg  # the built-in dataset is prepared from this very config: crop size and prep settings acted
    data = cfg.model_dump(mode="json")
    data["data"]["crop_size"] = manifest["crop_size"]
    if isinstance(manifest.get("prep"), dict):
        data["prep"] = manifest["prep"]
    try:
        return validate_layers([(f"config with the settings of dataset '{dataset}'", data)])
    except ConfigError:
        data["prep"] = cfg.prep.model_dump(mode="json")  # a manifest from another version: keep ours
        return validate_layers([(f"config with the crop size of dataset '{dataset}'", data)])


def check_crop_size(cfg: Config) -> None:
    """A ``data.crop_size`` the user set (``--config``, ``--set``) that differs from the patches of the prepared
    dataset ``data.dataset`` is a config error: the dataset's patches are what trains, so the value would be
    replaced without a word."""
    dataset = cfg.data.dataset
    if dataset is None or not cfg.set_by_user("data.crop_size"):
        return
    try:
        crop = json.loads((Path(dataset) / "manifest.json").read_text(encoding="utf-8")).get("crop_size")
    except (OSError, ValueError, AttributeError):
        return  # a missing or damaged dataset is reported where it is opened
    if isinstance(crop, int) and crop != cfg.data.crop_size:
        raise ConfigError(
            f"data.crop_size: {cfg.data.crop_size} was set, but dataset '{dataset}' holds {crop}-px "
            f"patches, which are what trains; leave data.crop_size out (or set {crop}), or prepare "
            f"the dataset again with data.crop_size {cfg.data.crop_size}"
        )


def check_folds(dataset: Path, folds: int) -> list[list[str]]:
    """Every fold can be trained, validated (on the val split outside it) and scored (on its own patches); per
    fold, a line for each class its held-out pixels hold and its training part lacks (no method can learn it)."""
    manifest = mf.load(dataset)
    # A dataset without cv_train_counts was prepared before prep moved val blocks into train to cover every
    # fold; preparing it again (same inputs, a new --out) may close the gap, and the line says so.
    again = "" if "cv_train_counts" in manifest else " (prepared before prep covered folds: prep into a new --out)"
    notes = []
    for fold in range(folds):
        parts = check_training_data(dataset, manifest, fold, heldout=True)
        lines = untrainable(manifest["classes"], {fold: parts["training"]}, {fold: parts["held-out"]})
        notes.append([line + again for line in lines])
    return notes


def check_test_data(folder: Path, manifest: dict[str, Any], state: dict[str, Any]) -> None:
    """The test split can measure this model: the same classes, and labelled pixels to count."""
    if list(manifest["classes"]) != list(state["classes"]):
        raise InputError(
            f"'{folder}' has classes {manifest['classes']} but the model was trained on {state['classes']}; "
            "evaluate on a dataset with the model's classes"
        )
    if not sum(manifest["class_counts"].get("test", [])):
        raise InputError(
            f"the test patches of '{folder}' hold no labelled pixel, so metrics would be empty; prepare it with a "
            "test share (prep.split.ratios) that gets labelled pixels"
        )


def _source_index(sources: list[dict[str, Any]], path: Path) -> int | None:
    digest = None
    for k, src in enumerate(sources):
        image = src.get("image", {})
        if Path(image.get("path", "")).is_file() and os.path.samefile(image["path"], path):
            return k
        if image.get("sha256"):
            digest = digest or sha256_file(path)
            if digest == image["sha256"]:
                return k
    return None


def trained_on(state: dict[str, Any], inputs: list[Path]) -> list[str]:
    """Warnings for scenes whose patches the run trained or selected its checkpoint on: their metrics include
    those pixels and overstate accuracy. A source of the dataset whose patches are all outside the run's
    training and validation parts (a held-out scene, its test split) is not warned about."""
    try:
        manifest = mf.load(Path(state["dataset"]))
        sources = manifest["sources"]
    except (InputError, KeyError, TypeError, OSError):
        return []
    fold = state.get("fold")
    seen = set(select(manifest, "train", fold)[0]) | set(select(manifest, "val", fold)[0])
    notes = []
    for path in inputs:
        k = _source_index(sources, Path(path))
        if k is None:
            continue
        own = [j for j, p in enumerate(manifest["patches"]) if p.get("source") == k]
        used = [j for j in own if j in seen]
        if not used and own:
            continue
        share = f"{len(used)} of its {len(own)} patches" if own else "its patches"
        notes.append(
            f"'{path}' is a scene this run was trained on ({share} are training or validation patches of "
            f"'{state['dataset']}'): its prediction and metrics include those pixels and overstate accuracy; "
            "evaluate the test split (ssmseg eval RUN) or another scene"
        )
    return notes
