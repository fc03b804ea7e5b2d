"""The test fields ``ssmseg sweep-steps`` solves: read in data units, normalised with the model's statistics,
with their fixed observed pixels; fields the model cannot take (channels, size, units) are a one-line error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssmseg.config import Config
from ssmseg.data.field_dataset import FieldDataset, load_field_manifest
from ssmseg.data.fields import FieldStats, denormalize, normalize
from ssmseg.errors import InputError, UsageError


@dataclass
class SweepFields:
    """The test fields: ``truth`` in data units, ``values`` normalised with the model's statistics."""

    truth: Tensor  # (N, C, H, W) float32
    values: Tensor  # (N, C, H, W) float32
    observed: Tensor  # (N, 1, H, W) bool
    indices: Tensor  # (N,) field indices in the dataset's manifest
    folder: Path
    available: int
    observed_fraction: float | tuple[float, float]
    data_range: float | None = None  # PSNR's MAX: the training range of the fields' own dataset (None: the model's)


def load_fields(
    cfg: Config, state: dict[str, Any], fields: Path | None, stats: FieldStats, invariant: bool = False
) -> SweepFields:
    """The first ``sweep.max_fields`` test fields with their fixed observed pixels (``reconstruction.seed``)."""
    own = fields is None
    folder = Path(state["dataset"]) if own else Path(fields)
    if own and not folder.is_dir():
        raise InputError(f"the run's dataset '{folder}' is gone; give the test fields with --fields DATASET")
    fraction = cfg.sweep.observed if cfg.sweep.observed is not None else cfg.reconstruction.observed
    key = state.get("stats_key") if own and state.get("stats_key") in load_field_manifest(folder)["stats"] else None
    ds = FieldDataset(
        folder,
        "test",
        state.get("fold") if own else None,
        fraction=fraction,
        seed=cfg.reconstruction.seed,
        stats_key=key,
    )
    want = int(state["in_channels"])
    if ds.channels != want:
        raise UsageError(
            f"the fields in '{folder}' have {ds.channels} channel(s) but the model takes {want}; give "
            f"fields with {want} channel(s)"
        )
    if min(ds.height, ds.width) < 6:
        raise UsageError(f"the fields in '{folder}' are {ds.height}x{ds.width}; SSIM needs at least 6x6 pixels")
    if not own:
        check_units(ds.stats, stats, folder, invariant)
    n = len(ds) if cfg.sweep.max_fields is None else min(len(ds), cfg.sweep.max_fields)
    items = [ds[i] for i in range(n)]
    truth = denormalize(torch.stack([it["field"] for it in items]), ds.stats)  # data units
    return SweepFields(
        truth,
        normalize(truth, stats).float(),
        torch.stack([it["observed"] for it in items]),
        torch.stack([it["index"] for it in items]),
        folder,
        len(ds),
        fraction,
        ds.stats.data_range,
    )


def check_units(theirs: FieldStats, ours: FieldStats, folder: Path, invariant: bool) -> None:
    """Fields in other units than the model's training fields are normalised with the model's statistics; only
    a model in per-field units (``invariant``: its ``per_field_units`` attribute, as field_unet) is unaffected.
    Any other model gets a one-line error instead of silent nonsense."""
    if invariant:
        return
    for c, (m1, s1, m0, s0) in enumerate(zip(theirs.mean, theirs.std, ours.mean, ours.std, strict=True)):
        if abs(m1 - m0) > s0 or not 0.5 <= s1 / s0 <= 2:
            raise UsageError(
                f"the fields in '{folder}' are not in the model's units (channel {c}: mean {m1:.4g}, std "
                f"{s1:.4g}; the model's training fields: mean {m0:.4g}, std {s0:.4g}) and this model "
                "normalises with its training statistics; give fields in the training units, or train "
                "field_unet, which works in per-field units"
            )


def check_model_takes(model: nn.Module, fields: SweepFields, device: torch.device, name: str) -> None:
    x = fields.values[:1].to(device)
    mask = fields.observed[:1].to(device).to(x.dtype)
    try:
        with torch.no_grad():
            v = model(torch.zeros_like(x), torch.zeros(1, device=device), x * mask, mask)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise UsageError(
            f"model '{name}' cannot take {x.shape[1]}-channel {x.shape[2]}x{x.shape[3]} fields "
            f"({str(exc).splitlines()[0][:160]}); give fields it was built for"
        ) from exc
    if v.shape != x.shape:
        raise UsageError(f"model '{name}' returns {tuple(v.shape)} for fields {tuple(x.shape)}; give fields it takes")
