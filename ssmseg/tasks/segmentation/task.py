"""Segmentation as a ``Task``: patch datasets, the loss (class weights included), augmentation, confusion
statistics, OA/mIoU/F1/kappa, prediction panels and the checkpoint metadata eval needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssmseg.config import Config
from ssmseg.data.datasets import PatchDataset
from ssmseg.data.sampling import balanced_weights
from ssmseg.engine.runtime import explicit_threads
from ssmseg.engine.task import StepOut
from ssmseg.errors import ConfigError, InputError
from ssmseg.models import build_model
from ssmseg.tasks.segmentation.augment import augment
from ssmseg.tasks.segmentation.losses import build_loss, class_weights_from_counts
from ssmseg.tasks.segmentation.metrics import confusion, metrics_from_confusion
from ssmseg.tasks.segmentation.spectral_init import init_spectral_head
from ssmseg.tasks.segmentation.visual import panel


def part_counts(ds: PatchDataset) -> list[int]:
    """Labelled pixels per class in the part a run (or cv fold) uses: from the manifest for the splits of a
    plain run, counted from the labels for the parts of a cv fold."""
    if ds.fold is None:
        return list(ds.manifest["class_counts"][ds.part])
    return ds.class_counts()


class SegmentationTask:
    """Per-pixel classes from a prepared patch dataset (``ssmseg prep``)."""

    name = "segmentation"
    monitor = "val/miou"
    mode = "max"
    metric_names = ("oa", "miou", "mean_f1", "kappa")

    def __init__(self, cfg: Config, dataset: Path, fold: int | None = None) -> None:
        self.cfg, self.dataset, self.fold = cfg, Path(dataset), fold
        self.train_set = PatchDataset(dataset, "train", fold)
        self.val_set = PatchDataset(dataset, "val", fold)
        self.manifest = self.train_set.manifest
        self.num_classes, self.ignore_index = self.train_set.num_classes, self.train_set.ignore_index
        self.classes: list[str] = self.manifest["classes"]
        self.train_counts = part_counts(self.train_set)
        if not any(self.train_counts):
            raise InputError(
                f"'{dataset}' has no labelled pixel in its training patches; check the masks and "
                "prep.class_map/ignore_values, then prepare it again"
            )
        weights = None
        if cfg.loss.class_weights == "auto":
            weights = class_weights_from_counts(self.train_counts)
        elif isinstance(cfg.loss.class_weights, list):
            if len(cfg.loss.class_weights) != self.num_classes:
                raise ConfigError(
                    f"loss.class_weights has {len(cfg.loss.class_weights)} values for "
                    f"{self.num_classes} classes; give one per class or 'auto'"
                )
            weights = torch.tensor(cfg.loss.class_weights)
        self.loss_fn = build_loss(cfg.loss, self.ignore_index, weights)

    def build_model(self) -> nn.Module:
        model = build_model(self.cfg.model, self.train_set.bands, self.num_classes)
        if getattr(model, "spectral", None) is not None and self.cfg.model.spectral_init == "fit":
            init_spectral_head(
                model.spectral,
                self.train_set,
                self.cfg.runtime.seed,
                self.cfg.model.spectral_context,
                explicit_threads(self.cfg.runtime),
            )
            model.spectral.requires_grad_(self.cfg.model.spectral_train)
        if self.cfg.model.linear_epochs and hasattr(model, "set_linear_phase"):
            model.set_linear_phase(self.cfg.model.linear_epochs * self.samples_per_epoch())
        return model

    def samples_per_epoch(self) -> int:
        """Training patches one process draws per epoch (the sampler's cap, shared among DDP processes)."""
        n = (
            len(self.train_set)
            if self.cfg.data.max_patches is None
            else min(len(self.train_set), self.cfg.data.max_patches)
        )
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        return -(-n // world)

    def sample_weights(self, balance: float) -> list[float]:
        """Per training patch, its weight in class-balanced sampling (``data.balance``; ``balanced_weights``)."""
        n, ignore = self.num_classes, self.ignore_index
        counts = np.zeros((len(self.train_set), n), np.int64)
        for i in range(len(self.train_set)):
            lab = self.train_set.labels(i)
            counts[i] = np.bincount(lab[lab != ignore], minlength=n)[:n]
        return balanced_weights(counts, balance).tolist()

    def _step(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOut:
        logits = model(x)
        loss = self.loss_fn(logits, y)
        cm = confusion(logits.detach().argmax(1), y, self.num_classes, self.ignore_index)
        return StepOut(loss, len(x), {"confusion": cm})

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator) -> StepOut:
        """batch image (B, C, H, W) float, mask (B, H, W) long; augmented on the device."""
        x, y = augment(batch["image"], batch["mask"], self.cfg.augment, gen, self.ignore_index)
        return self._step(model, x, y)

    def validation_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOut:
        return self._step(model, batch["image"], batch["mask"])

    def metrics(self, stats: dict[str, Tensor]) -> dict[str, float]:
        m = metrics_from_confusion(stats["confusion"].cpu().numpy(), self.classes)
        return {k: m[k] for k in self.metric_names}

    def examples(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Input, truth and prediction side by side for the first three patches: (3, H, 3 W + 8) uint8."""
        pred = model(batch["image"][:3]).argmax(1)
        palette = self.manifest["palette"]
        return {
            f"val/prediction_{i}": panel(batch["image"][i], batch["mask"][i], pred[i], palette, self.ignore_index)
            for i in range(len(pred))
        }

    def checkpoint_meta(self) -> dict[str, Any]:
        m, ds = self.manifest, self.train_set
        return {
            "model_name": self.cfg.model.name,
            "in_channels": ds.bands,
            "num_classes": self.num_classes,
            "classes": self.classes,
            "palette": m["palette"],
            "ignore_index": self.ignore_index,
            "dataset": str(self.dataset),
            "fold": self.fold,
            "labels": m["labels"],
            "band_names": m.get("band_names"),
            "class_counts_train": self.train_counts,
            "nodata": m["sources"][0]["image"]["nodata"],
            "normalization": {
                "method": m["normalize"],
                "stats_key": ds.stats_key,
                "offset": ds.offset.ravel().tolist(),
                "scale": ds.scale.ravel().tolist(),
            },
        }

    def run_info(self, scored: list[int] | None = None) -> dict[str, Any]:
        info = {
            "dataset": str(self.dataset),
            "fold": self.fold,
            "classes": self.classes,
            "class_counts_train": self.train_counts,
            "class_counts_val": part_counts(self.val_set),
        }
        if scored is not None:  # chance baselines on exactly the pixels validation scores
            info["class_counts_val_scored"] = self.val_set.class_counts(scored)
        return info
