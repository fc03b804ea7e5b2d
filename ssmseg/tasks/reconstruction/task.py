"""Sparse-field reconstruction as a ``Task``: flow matching on the linear path, trained on every unobserved
pixel, validated by PSNR/RMSE/SSIM of the one-step estimate (the posterior-mean approximation, 1 NFE) and
of a short solve (``reconstruction.val_solver``/``val_steps``), in the data's units with PSNR's MAX = the
training fields' value range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssmseg.config import Config
from ssmseg.data.field_dataset import FieldDataset
from ssmseg.data.fields import denormalize, observed_masks_torch
from ssmseg.engine.task import StepOut
from ssmseg.models import build_model
from ssmseg.models.field_inputs import field_frame
from ssmseg.tasks.reconstruction.metrics import metrics_from_sums, reconstruction_sums
from ssmseg.tasks.reconstruction.path import (
    clean_loss,
    draw_noise,
    draw_times,
    finish,
    flow_matching_loss,
    interpolate,
)
from ssmseg.tasks.reconstruction.sampling import velocity_of
from ssmseg.tasks.reconstruction.solvers import solve


def predicts_clean(model: nn.Module) -> bool:
    """Whether the model (or the one a DDP wrapper holds) is trained on its clean estimate
    (``model(..., return_clean=True)``) rather than on its velocity."""
    return bool(getattr(getattr(model, "module", model), "predicts_clean", False))


def field_loss(
    model: nn.Module, x0: Tensor, x1: Tensor, t: Tensor, observed: Tensor, tv_weight: float, pooling: str = "mse"
) -> Tensor:
    """The training loss at (x_t, t): the clean estimate's squared error in per-field units (location and scale
    of the observed values; fields pooled by ``pooling``, see ``clean_loss``) for models that predict it, else
    the flow-matching velocity loss."""
    mask = observed.to(x1.dtype)
    x_t = interpolate(x0, x1, t)
    if predicts_clean(model):
        clean = model(x_t, t, x1 * mask, mask, return_clean=True).float()
        return clean_loss(clean, x1, observed, field_frame(x1 * mask, mask)[1], tv_weight, pooling)
    v = model(x_t, t, x1 * mask, mask)
    return flow_matching_loss(v.float(), x0, x1, t, observed, tv_weight)["loss"]


def field_image(x: Tensor, lo: float, hi: float) -> Tensor:
    """(H, W) -> (3, H, W) uint8 grey, scaled from [lo, hi]."""
    g = ((x.float() - lo) / max(hi - lo, 1e-12) * 255).clamp(0, 255).to(torch.uint8)
    return g[None].repeat(3, 1, 1)


class ReconstructionTask:
    """A dense field from a few observed pixels (``ssmseg prep`` with task.name: reconstruction)."""

    name = "reconstruction"
    monitor = "val/psnr"
    mode = "max"
    metric_names = ("psnr", "rmse", "ssim", "psnr_all", "spec_err", "psnr_solve", "rmse_solve", "ssim_solve")
    train_metric_names: tuple[str, ...] = ()  # training reports its flow-matching loss only

    def __init__(self, cfg: Config, dataset: Path, fold: int | None = None) -> None:
        self.cfg, self.dataset, self.fold = cfg, Path(dataset), fold
        rc = cfg.reconstruction
        self.train_set = FieldDataset(dataset, "train", fold)
        self.val_set = FieldDataset(
            dataset, "val", fold, fraction=rc.observed, seed=rc.seed, stats_key=self.train_set.stats_key
        )
        self.stats = self.train_set.stats
        self.channels = self.train_set.channels

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.channels, 0)

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator) -> StepOut:
        """batch field (B, C, H, W) normalised; observed pixels, time and noise drawn from ``gen``."""
        x1 = batch["field"]
        b, _, h, w = x1.shape
        observed = observed_masks_torch(b, h, w, self.cfg.reconstruction.observed, gen)[:, None].to(x1.device)
        t, x0 = draw_times(b, gen).to(x1.device), draw_noise(x1, gen)
        share = self.cfg.reconstruction.t_zero
        if share > 0:  # some fields at t = 0: the one-step (posterior-mean) estimate gets its own training
            t = torch.where(torch.rand(b, generator=gen, device=gen.device).to(t.device) < share, 0.0, t)
        rc = self.cfg.reconstruction
        return StepOut(field_loss(model, x0, x1, t, observed, self.cfg.loss.tv_weight, rc.field_loss), b)

    def _sums(self, pred: Tensor, x1: Tensor, observed: Tensor, prefix: str) -> dict[str, Tensor]:
        sums = reconstruction_sums(
            denormalize(pred.float(), self.stats), denormalize(x1, self.stats), observed, self.stats.data_range
        )
        return {f"{prefix}{k}": v for k, v in sums.items()}

    def validation_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOut:
        """Fixed observed pixels, noise and time per field: the loss at (x_t, t), the one-step estimate from
        t = 0 and a short solve."""
        x1, x0, t, observed = batch["field"], batch["noise"], batch["t"], batch["observed"]
        mask = observed.to(x1.dtype)
        loss = field_loss(model, x0, x1, t, observed, self.cfg.loss.tv_weight, self.cfg.reconstruction.field_loss)
        zero = torch.zeros_like(t)
        one_step = finish(x0 + model(x0, zero, x1 * mask, mask).float(), x1, observed)
        rc = self.cfg.reconstruction
        solved = finish(solve(velocity_of(model, x1, observed), x0, rc.val_solver, rc.val_steps), x1, observed)
        stats = {**self._sums(one_step, x1, observed, "one/"), **self._sums(solved, x1, observed, "solve/")}
        return StepOut(loss, len(x1), stats)

    def metrics(self, stats: dict[str, Tensor]) -> dict[str, float]:
        if not stats:
            return {}
        one = metrics_from_sums({k[4:]: v for k, v in stats.items() if k.startswith("one/")})
        solved = metrics_from_sums({k[6:]: v for k, v in stats.items() if k.startswith("solve/")})
        out = {k: one[k] for k in ("psnr", "rmse", "ssim", "psnr_all", "spec_err")}
        out.update({f"{k}_solve": solved[k] for k in ("psnr", "rmse", "ssim")})
        return out

    def examples(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Observed points, truth, solve, absolute error side by side for the first three fields (channel 0)."""
        x1, x0, observed = batch["field"][:3], batch["noise"][:3], batch["observed"][:3]
        rc = self.cfg.reconstruction
        pred = finish(solve(velocity_of(model, x1, observed), x0, rc.val_solver, rc.val_steps), x1, observed)
        lo, hi = float(x1.min()), float(x1.max())
        out = {}
        for i in range(len(x1)):
            shown = torch.where(observed[i, 0], x1[i, 0], torch.full_like(x1[i, 0], lo))
            err = (pred[i, 0] - x1[i, 0]).abs()
            gap = torch.full((3, x1.shape[-2], 2), 255, dtype=torch.uint8, device=x1.device)
            parts = [
                field_image(shown, lo, hi),
                gap,
                field_image(x1[i, 0], lo, hi),
                gap,
                field_image(pred[i, 0], lo, hi),
                gap,
                field_image(err, 0.0, hi - lo),
            ]
            out[f"val/field_{i}"] = torch.cat(parts, dim=2).cpu()
        return out

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model.name,
            "in_channels": self.channels,
            "field_size": [self.train_set.height, self.train_set.width],
            "dataset": str(self.dataset),
            "fold": self.fold,
            "stats": self.stats.to_dict(),
            "stats_key": self.train_set.stats_key,
            "observed": self.cfg.reconstruction.observed,
            "normalization": {"method": "zscore", "offset": list(self.stats.mean), "scale": list(self.stats.std)},
        }

    def run_info(self, scored: list[int] | None = None) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "fold": self.fold,
            "fields_train": len(self.train_set),
            "fields_val": len(self.val_set),
            "field_size": [self.train_set.height, self.train_set.width],
            "observed": self.cfg.reconstruction.observed,
            "data_range": self.stats.data_range,
        }
