"""Tasks: what the engine trains (``engine/task.py``). ``build_task`` is the registry; an unknown name
lists the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ssmseg.config import Config
from ssmseg.engine.task import Task
from ssmseg.errors import ConfigError


def _segmentation(cfg: Config, dataset: Path, fold: int | None) -> Task:
    from ssmseg.tasks.segmentation.task import SegmentationTask

    return SegmentationTask(cfg, dataset, fold)


def _reconstruction(cfg: Config, dataset: Path, fold: int | None) -> Task:
    from ssmseg.tasks.reconstruction.task import ReconstructionTask

    return ReconstructionTask(cfg, dataset, fold)


TASKS: dict[str, Callable[[Config, Path, int | None], Task]] = {
    "segmentation": _segmentation,
    "reconstruction": _reconstruction,
}


def task_class(name: str) -> type | None:
    """The task class of a name (its monitor, mode and metric names are class attributes), or None."""
    if name == "segmentation":
        from ssmseg.tasks.segmentation.task import SegmentationTask

        return SegmentationTask
    if name == "reconstruction":
        from ssmseg.tasks.reconstruction.task import ReconstructionTask

        return ReconstructionTask
    return None


def build_task(cfg: Config, dataset: Path, fold: int | None = None) -> Task:
    """The task named ``cfg.task.name`` on a prepared dataset (and cv fold)."""
    if cfg.task.name not in TASKS:
        raise ConfigError(f"task.name: '{cfg.task.name}' is not available; valid tasks: {', '.join(TASKS)}")
    return TASKS[cfg.task.name](cfg, dataset, fold)
