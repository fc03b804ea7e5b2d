"""Training data from a prepared folder: ``{"image", "mask"}`` samples, normalised on load.

The statistics used are those of the training part the model sees: ``train`` for a plain run, ``fold_k``
for cross-validation fold k, so one prepared folder serves every fold without leaking.
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


def select(manifest: dict[str, Any], part: str, fold: int | None = None) -> tuple[list[int], str]:
    """Patch indices and the statistics key for ``part`` in train/val/test (or a cv fold's train/val)."""
    patches = manifest["patches"]
    if fold is None:
        return [i for i, p in enumerate(patches) if p["split"] == part], "train"
    if part == "test":
        return [i for i, p in enumerate(patches) if p["split"] == "test"], f"fold_{fold}"
    if part == "train":
        return [i for i, p in enumerate(patches) if p["fold"] >= 0 and p["fold"] != fold], f"fold_{fold}"
    return [i for i, p in enumerate(patches) if p["fold"] == fold], f"fold_{fold}"


class PatchDataset(Dataset):
    """Patches of one part of a prepared dataset; ``max_items`` keeps a random subset (the fast mode)."""

    def __init__(self, folder: str | Path, split: str = "train", fold: int | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = mf.load(self.folder)
        if self.manifest.get("task", "segmentation") != "segmentation":
            raise InputError(f"'{self.folder}' is a field (reconstruction) dataset; give a segmentation dataset or "
                             "set task.name: reconstruction")  # fmt: skip
        self.indices, self.stats_key = select(self.manifest, split, fold)
        if not self.indices:
            raise InputError(f"'{self.folder}' has no {split} patches{'' if fold is None else f' in fold {fold}'}; "
                             "prepare it with other split ratios or more blocks")  # fmt: skip
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
        images, labels, valid = self._open()
        j = self.indices[i]
        image = (images[j].astype(np.float32) - self.offset) / self.scale
        image *= valid[j][None]  # invalid pixels are 0 after normalisation
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(labels[j].astype(np.int64))}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state
