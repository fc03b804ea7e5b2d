"""Reconstruction's answers to what the commands ask a task (``tasks/life.py``). Its classical baselines
(interpolants, GP) are scored by ``ssmseg sweep-steps`` on the same fields and observed pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssmseg.config import Config
from ssmseg.data.builtin import prepare_sinusoids
from ssmseg.data.prepare import PrepResult
from ssmseg.data.prepare_fields import prepare_fields
from ssmseg.errors import ConfigError, InputError, UsageError
from ssmseg.tasks.life import StepSweep
from ssmseg.tasks.reconstruction.task import ReconstructionTask
from ssmseg.tasks.results import BaselineResult, EvalResult

TASK_CLASS = ReconstructionTask
NO_BASELINES = (
    "{option}: the reconstruction task's classical baselines (interpolants, GP) are scored by "
    "ssmseg sweep-steps (sweep.baselines) on the same fields; set {option} false"
)


class ReconstructionLife:
    name = "reconstruction"
    scores_heldout = False  # cv reports the validation metrics of the val split outside each fold, and says so

    def prep(self, cfg: Config, out: Path, force: bool) -> PrepResult:
        return prepare_fields(cfg, out, force)

    def builtin_dataset(self, cfg: Config) -> Path:
        """The generated sinusoid fields of ``prep.fields`` (whatever ``data.synthetic`` says)."""
        return prepare_sinusoids(cfg).out

    def check_config(self, cfg: Config) -> None:
        """Fields carry their own size (``prepare`` records it as the crop size): nothing to refuse."""

    def prepare(self, cfg: Config, dataset: Path, manifest: dict[str, Any], fold: int | None) -> Config:
        """Fields carry their own size: it is recorded as the crop size that ran."""
        side = min(manifest.get("size") or [cfg.data.crop_size])
        if side == cfg.data.crop_size or side < 8:
            return cfg
        return cfg.model_copy(update={"data": cfg.data.model_copy(update={"crop_size": side})})

    def check_folds(self, dataset: Path, folds: int) -> list[list[str]]:
        from ssmseg.data.field_dataset import FieldDataset

        for fold in range(folds):
            for part in ("train", "val", "heldout"):
                FieldDataset(dataset, part, fold)  # a part without fields is a one-line error naming it
        return [[] for _ in range(folds)]  # fields have no classes a fold could lack

    def check_baselines(self, option: str) -> None:
        raise ConfigError(NO_BASELINES.format(option=option))

    def evaluate(
        self,
        cfg: Config,
        state: dict[str, Any],
        device: torch.device,
        out: Path,
        inputs: list[Path],
        masks: list[Path],
        dataset: Path | None,
        model: nn.Module | None = None,
    ) -> EvalResult:
        from ssmseg.tasks.reconstruction.evaluate import run

        if cfg.eval.baselines:
            self.check_baselines("eval.baselines")
        if model is not None:
            raise InputError("a reconstruction model is not evaluated through an export; evaluate its run")
        return run(cfg, state, device, out, inputs, masks, dataset)

    def score_heldout(
        self, cfg: Config, state: dict[str, Any], dataset: Path, fold: int, device: torch.device
    ) -> dict[str, Any]:
        raise NotImplementedError("reconstruction cv reports validation metrics (scores_heldout is False)")

    def baselines(self, cfg: Config, dataset: Path, fold: int | None, scored: str | None = None) -> dict[str, Any]:
        self.check_baselines("cv.baselines" if fold is not None else "eval.baselines")
        return {}

    def input_warnings(self, state: dict[str, Any], inputs: list[Path]) -> list[str]:
        return []

    def export_model(self, state: dict[str, Any], source: Path) -> nn.Module:
        raise InputError(
            f"'{source}' is a reconstruction model: its sampler integrates the network over an ODE "
            "solve in Python, which an export does not hold; export a segmentation run"
        )

    def baseline(self, cfg: Config, dataset: Path, fold: int | None, out: Path | None) -> BaselineResult:
        raise UsageError(
            "ssmseg baseline fits per-pixel classifiers on a segmentation dataset; the reconstruction task's "
            "classical baselines (interpolants, GP) are scored by ssmseg sweep-steps (sweep.baselines)"
        )

    def step_sweep(self, run: Path) -> StepSweep:
        from ssmseg.tasks.reconstruction.sweep import FieldSweep

        return FieldSweep()


LIFE = ReconstructionLife()
