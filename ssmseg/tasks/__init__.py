"""Tasks: what the engine trains (``engine/task.py``) and what the other commands ask (``tasks/life.py``).
This is the registry: the only place that maps a task's name to its code; an unknown name lists the valid
ones. Files written before tasks were recorded (checkpoints, manifests) are segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssmseg.config import Config
from ssmseg.engine.task import Task
from ssmseg.errors import ConfigError, InputError
from ssmseg.tasks.life import TaskLife

TASK_NAMES = ("segmentation", "reconstruction")
DEFAULT_TASK = TASK_NAMES[0]  # what a checkpoint or manifest that records no task holds


def _module(name: str) -> Any:
    """The task's package (imported on demand: each pulls in its models), or None."""
    if name not in TASK_NAMES:
        return None
    import importlib

    return importlib.import_module(f"ssmseg.tasks.{name}.life")


def task_class(name: str) -> type | None:
    """The task class of a name (its monitor, mode and metric names are class attributes), or None."""
    module = _module(name)
    return None if module is None else module.TASK_CLASS


def task_of(record: dict[str, Any] | None) -> str:
    """The task a checkpoint state, manifest or metrics file records."""
    return str((record or {}).get("task") or DEFAULT_TASK)


def task_life(name: str, what: str = "task.name") -> TaskLife:
    """Everything a command asks the task named ``name`` (``what`` says where the name came from)."""
    module = _module(name)
    if module is None:
        error = ConfigError if what == "task.name" else InputError
        raise error(f"{what}: '{name}' is not a task this ssmseg knows; valid tasks: {', '.join(TASK_NAMES)}")
    return module.LIFE


def life_of(state: dict[str, Any]) -> TaskLife:
    """The life of the task a checkpoint (or an exported model's metadata) records."""
    return task_life(task_of(state), "the checkpoint's task")


def build_task(cfg: Config, dataset: Path, fold: int | None = None) -> Task:
    """The task named ``cfg.task.name`` on a prepared dataset (and cv fold)."""
    cls = task_class(cfg.task.name)
    if cls is None:
        raise ConfigError(f"task.name: '{cfg.task.name}' is not available; valid tasks: {', '.join(TASK_NAMES)}")
    return cls(cfg, dataset, fold)
