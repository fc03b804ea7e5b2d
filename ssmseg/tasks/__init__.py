"""Tasks: what the engine trains (``engine/task.py``). ``build_task`` is the registry; an unknown name
lists the valid ones."""

from __future__ import annotations

from pathlib import Path

from ssmseg.config import Config
from ssmseg.engine.task import Task
from ssmseg.errors import ConfigError

TASK_NAMES = ("segmentation", "reconstruction")


def task_class(name: str) -> type | None:
    """The task class of a name (its monitor, mode and metric names are class attributes), or None. Imported
    on demand: each pulls in its models."""
    if name == "segmentation":
        from ssmseg.tasks.segmentation.task import SegmentationTask

        return SegmentationTask
    if name == "reconstruction":
        from ssmseg.tasks.reconstruction.task import ReconstructionTask

        return ReconstructionTask
    return None


def build_task(cfg: Config, dataset: Path, fold: int | None = None) -> Task:
    """The task named ``cfg.task.name`` on a prepared dataset (and cv fold)."""
    cls = task_class(cfg.task.name)
    if cls is None:
        raise ConfigError(f"task.name: '{cfg.task.name}' is not available; valid tasks: {', '.join(TASK_NAMES)}")
    return cls(cfg, dataset, fold)
