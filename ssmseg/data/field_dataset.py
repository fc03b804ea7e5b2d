"""Fields of a prepared reconstruction dataset: ``{"field"}`` samples normalised on load with the training
statistics of the part the model sees (``train``, or ``fold_k`` in cross-validation).

Validation and test sets are *fixed*: each field also carries its observed pixels, starting noise and a
time for the validation loss, all drawn from ``(seed, field index)`` alone, so every run, every epoch and
every baseline sees the same observed pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssmseg.data import manifest as mf
from ssmseg.data.datasets import describe_part, select_items
from ssmseg.data.fields import FieldStats, normalize, observed_masks
from ssmseg.errors import InputError


def select_fields(manifest: dict[str, Any], part: str, fold: int | None) -> tuple[list[int], str]:
    """Field indices of ``part`` and their statistics key: the same parts as patches (``datasets.select``)."""
    return select_items(manifest["fields"], part, fold)


def load_field_manifest(folder: Path) -> dict[str, Any]:
    manifest = mf.load(folder)
    if mf.holds(manifest) != "fields":
        raise InputError(
            f"'{folder}' is a segmentation dataset; this needs a field (reconstruction) dataset: make "
            "one with `ssmseg prep --synthetic sinusoids`, or `ssmseg prep --set "
            "task.name=reconstruction --set 'prep.images=[...]'` on field files"
        )
    return manifest


class FieldDataset(Dataset):
    """One part of a field dataset. With ``fraction`` (fixed mode) each item also has ``observed`` (1, H, W)
    bool, ``noise`` (C, H, W) and ``t`` (), drawn from ``(seed, index)``."""

    def __init__(
        self,
        folder: str | Path,
        part: str = "train",
        fold: int | None = None,
        fraction: float | tuple[float, float] | None = None,
        seed: int = 0,
        stats_key: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = load_field_manifest(self.folder)
        self.indices, key = select_fields(self.manifest, part, fold)
        if not self.indices:
            where = "" if fold is None else f" for cv fold {fold} ({describe_part(part, fold)})"
            raise InputError(
                f"'{self.folder}' has no {part} fields{where}; prepare it with other split ratios "
                "(prep.split.ratios), more fields or fewer folds"
            )
        self.stats_key = stats_key or key
        self.stats = FieldStats.from_dict(self.manifest["stats"][self.stats_key])
        self.fraction, self.seed = fraction, seed
        self.channels, (self.height, self.width) = int(self.manifest["channels"]), self.manifest["size"]
        self._fields: np.ndarray | None = None

    def _open(self) -> np.ndarray:
        if self._fields is None:  # opened lazily: each DataLoader worker maps the file itself
            self._fields = np.load(self.folder / "fields.npy", mmap_mode="r")
        return self._fields

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.indices[i]
        field = normalize(np.asarray(self._open()[j], dtype=np.float32), self.stats).astype(np.float32)
        item = {"field": torch.from_numpy(field), "index": torch.tensor(j)}
        if self.fraction is not None:
            rng = np.random.default_rng([self.seed, j, 1])
            item["noise"] = torch.from_numpy(rng.standard_normal(field.shape).astype(np.float32))
            item["t"] = torch.tensor(float(rng.random()), dtype=torch.float32)
            item["observed"] = torch.from_numpy(
                observed_masks(1, self.height, self.width, self.fraction, self.seed, first_index=j)
            )
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fields"] = None
        return state
