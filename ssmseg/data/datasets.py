"""Training data from a prepared folder: ``{"image", "mask"}`` samples, normalised on load.

The statistics used are those of the training part the model sees: ``train`` for a plain run, ``fold_k``
for cross-validation fold k, so one prepared folder serves every fold without leaking.

Parts (``select``): a plain run trains on ``train``, selects its checkpoint on ``val`` and is scored on
``test``. Cross-validation fold k trains on the ``train`` patches outside fold k, selects on the ``val``
patches outside fold k, and is scored once on ``heldout``: every patch of fold k, whose labels within
the prepared buffer of any window outside fold k are ignored (prep buffers val/test against training
windows only; this closes the gaps between folds, and overlapping windows in ``split.mode: random``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssmseg.data import manifest as mf
from ssmseg.data.stats import scale_and_shift
from ssmseg.errors import InputError

PARTS = ("train", "val", "test", "heldout")


def select(manifest: dict[str, Any], part: str, fold: int | None = None) -> tuple[list[int], str]:
    """Patch indices and the statistics key of ``part``: train/val/test of a plain run, or of cv fold k
    train (``train`` patches outside fold k), val (``val`` patches outside fold k), heldout (fold k) and
    test (the test split, which no fold uses)."""
    return select_items(manifest["patches"], part, fold)


def select_items(items: list[dict[str, Any]], part: str, fold: int | None) -> tuple[list[int], str]:
    """``select`` for any list of items with ``split`` and ``fold`` (patches, fields)."""
    if part not in PARTS or (part == "heldout" and fold is None):
        raise ValueError(f"part {part!r} (fold {fold}) is not one of {PARTS} (heldout needs a fold)")
    if fold is None:
        return [i for i, p in enumerate(items) if p["split"] == part], "train"
    if part == "heldout":
        return [i for i, p in enumerate(items) if p["fold"] == fold], f"fold_{fold}"
    if part == "test":
        return [i for i, p in enumerate(items) if p["split"] == "test"], f"fold_{fold}"
    return [
        i for i, p in enumerate(items) if p["split"] == part and p["fold"] >= 0 and p["fold"] != fold
    ], f"fold_{fold}"


def heldout_buffer(manifest: dict[str, Any], indices: list[int], fold: int) -> dict[int, list[tuple[int, ...]]]:
    """Per held-out patch (an index into ``indices``), the (row, col, h, w) regions inside it that lie within
    the prepared buffer of a window outside fold k (training or validation): their labels are ignored."""
    patches = manifest["patches"]
    buffer = int((manifest.get("split") or {}).get("buffer") or 0)
    cell = max(max(p["window"][2] for p in patches), 1)
    grid: dict[tuple[int, int, int], list[int]] = {}
    for j, p in enumerate(patches):
        if p["fold"] >= 0 and p["fold"] != fold:
            r, c, h, w = p["window"]
            for cr in range((r - buffer) // cell, (r + h + buffer - 1) // cell + 1):
                for cc in range((c - buffer) // cell, (c + w + buffer - 1) // cell + 1):
                    grid.setdefault((p["source"], cr, cc), []).append(j)
    regions: dict[int, list[tuple[int, ...]]] = {}
    for k, i in enumerate(indices):
        p = patches[i]
        r, c, h, w = p["window"]
        rows, cols = range(r // cell, (r + h - 1) // cell + 1), range(c // cell, (c + w - 1) // cell + 1)
        near = {j for cr in rows for cc in cols for j in grid.get((p["source"], cr, cc), ())}
        for j in sorted(near):
            jr, jc, jh, jw = patches[j]["window"]
            r0, c0 = max(r, jr - buffer), max(c, jc - buffer)
            r1, c1 = min(r + h, jr + jh + buffer), min(c + w, jc + jw + buffer)
            if r1 > r0 and c1 > c0:
                regions.setdefault(k, []).append((r0 - r, c0 - c, r1 - r0, c1 - c0))
    return regions


def describe_part(part: str, fold: int | None) -> str:
    """What a part holds, in words (for messages, history and cv summaries)."""
    if fold is None:
        return f"the {part} split"
    return {
        "train": f"train split outside fold {fold}",
        "val": f"val split outside fold {fold}",
        "heldout": f"fold {fold} itself",
        "test": "the test split",
    }[part]


def describe_selection(select: str, fold: int | None) -> str:
    """What chose a run's best.pt, in words: the val part (``train.select: best``) or nothing (``last``)."""
    if select == "last":
        return "nothing: the last epoch (train.select: last)"
    return describe_part("val", fold)


class PatchDataset(Dataset):
    """Patches of one part of a prepared dataset (``select``)."""

    def __init__(self, folder: str | Path, split: str = "train", fold: int | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = mf.load(self.folder)
        if mf.holds(self.manifest) != "patches":
            raise InputError(
                f"'{self.folder}' is a field (reconstruction) dataset; this needs a segmentation "
                "dataset of image patches and masks: make one with `ssmseg prep --config SCENES.yaml` "
                "(or `--synthetic hyperspectral|rgb`)"
            )
        self.part, self.fold = split, fold
        self.indices, self.stats_key = select(self.manifest, split, fold)
        if not self.indices:
            where = "" if fold is None else f" for cv fold {fold} ({describe_part(split, fold)})"
            raise InputError(
                f"'{self.folder}' has no {split} patches{where}; prepare it with other split ratios "
                "(prep.split.ratios), smaller prep.split.block_size or fewer folds"
            )
        self.ignored = heldout_buffer(self.manifest, self.indices, fold) if split == "heldout" else {}
        stats = self.manifest["stats"][self.stats_key]
        if not stats.get("pixels"):
            raise InputError(f"'{self.folder}': no valid training pixels for statistics '{self.stats_key}'")
        offset, scale = scale_and_shift(stats, self.manifest["normalize"])
        self.offset, self.scale = offset[:, None, None], scale[:, None, None]
        self.ignore_index = int(self.manifest["ignore_index"])
        self._arrays: tuple[np.ndarray, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def bands(self) -> int:
        return int(self.manifest["bands"])

    def _open(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:  # opened lazily: each DataLoader worker maps the files itself
            self._arrays = tuple(
                np.load(self.folder / f"{k}.npy", mmap_mode="r") for k in ("images", "labels", "valid")
            )
        return self._arrays

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        images, _, valid = self._open()
        j = self.indices[i]
        image = (images[j].astype(np.float32) - self.offset) / self.scale
        image *= valid[j][None]  # invalid pixels are 0 after normalisation
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(self.labels(i))}

    def labels(self, i: int) -> np.ndarray:
        """(crop, crop) int64 labels of item ``i``, with the held-out buffer applied."""
        mask = self._open()[1][self.indices[i]].astype(np.int64)
        for r, c, h, w in self.ignored.get(i, ()):
            mask[r : r + h, c : c + w] = self.ignore_index
        return mask

    def class_counts(self, items: list[int] | None = None) -> list[int]:
        """Labelled pixels per class in this part (what the model sees of it), or in its ``items`` only."""
        counts = np.zeros(self.num_classes, np.int64)
        for i in range(len(self)) if items is None else items:
            lab = self.labels(i)
            counts += np.bincount(lab[lab != self.ignore_index], minlength=self.num_classes)[: self.num_classes]
        return counts.tolist()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state
