"""Segmentation's answers to what the commands ask a task (``tasks/life.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssmseg.config import Config
from ssmseg.data.builtin import prepare_synthetic
from ssmseg.data.prepare import PrepResult, prepare
from ssmseg.errors import ConfigError, UsageError
from ssmseg.tasks.life import StepSweep
from ssmseg.tasks.results import BaselineResult, EvalResult
from ssmseg.tasks.segmentation import checks
from ssmseg.tasks.segmentation.task import SegmentationTask

TASK_CLASS = SegmentationTask


class SegmentationLife:
    name = "segmentation"
    scores_heldout = True

    def prep(self, cfg: Config, out: Path, force: bool) -> PrepResult:
        return prepare(cfg, out, force)

    def builtin_dataset(self, cfg: Config) -> Path:
        """The synthetic scene of ``data.synthetic`` (hyperspectral or rgb), cut into patches."""
        if cfg.data.synthetic == "sinusoids":
            raise ConfigError(
                "data.synthetic: sinusoids are fields for task.name reconstruction; "
                "use hyperspectral or rgb for segmentation"
            )
        return prepare_synthetic(cfg, cfg.data.synthetic).out

    def check_config(self, cfg: Config) -> None:
        checks.check_crop_size(cfg)

    def prepare(self, cfg: Config, dataset: Path, manifest: dict[str, Any], fold: int | None) -> Config:
        return checks.prepare(cfg, dataset, manifest, fold)

    def check_folds(self, dataset: Path, folds: int) -> list[list[str]]:
        return checks.check_folds(dataset, folds)

    def check_baselines(self, option: str) -> None:
        """The classical baselines are available (``ssmseg baseline``'s, scored as the model)."""

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
        from ssmseg.tasks.segmentation import evaluate

        if model is None:
            return evaluate.run(cfg, state, device, out, inputs, masks, dataset)
        return evaluate.run_model(cfg, state, model, device, out, inputs, masks, dataset)

    def score_heldout(
        self, cfg: Config, state: dict[str, Any], dataset: Path, fold: int, device: torch.device
    ) -> dict[str, Any]:
        from ssmseg.tasks.segmentation.evaluate import score_heldout

        return score_heldout(cfg, state, dataset, fold, device)

    def baselines(self, cfg: Config, dataset: Path, fold: int | None, scored: str | None = None) -> dict[str, Any]:
        from ssmseg.tasks.segmentation.baseline import baseline_scores

        return baseline_scores(cfg, dataset, fold, scored)

    def input_warnings(self, state: dict[str, Any], inputs: list[Path]) -> list[str]:
        return checks.trained_on(state, inputs)

    def export_model(self, state: dict[str, Any], source: Path) -> nn.Module:
        from ssmseg.tasks.segmentation.evaluate import load_model

        return load_model(state, torch.device("cpu"))

    def baseline(self, cfg: Config, dataset: Path, fold: int | None, out: Path | None) -> BaselineResult:
        from ssmseg.tasks.segmentation.baseline import run_baseline

        return run_baseline(cfg, dataset, fold, out)

    def step_sweep(self, run: Path) -> StepSweep:
        raise UsageError(
            f"'{run}' is a segmentation run; sweep-steps needs a reconstruction run (task.name: reconstruction)"
        )


LIFE = SegmentationLife()
