"""``ssmseg eval``: load a checkpoint, dispatch on the task it records, and own the output folder.

Outputs are built in a temporary folder and moved in place when complete; the task's evaluator
(``tasks/<task>/evaluate.py``) writes the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ssmseg.config import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import ConfigError, InputError
from ssmseg.tasks.results import EvalResult

Evaluator = Callable[[Config, dict[str, Any], torch.device, Path, list[Path], list[Path], Path | None], EvalResult]


def _segmentation(*args: Any) -> EvalResult:
    from ssmseg.tasks.segmentation.evaluate import run

    return run(*args)


def _reconstruction(*args: Any) -> EvalResult:
    from ssmseg.tasks.reconstruction.evaluate import run

    return run(*args)


EVALUATORS: dict[str, Evaluator] = {"segmentation": _segmentation, "reconstruction": _reconstruction}


def evaluator_for(state: dict[str, Any]) -> Evaluator:
    task = state.get("task", "segmentation")  # checkpoints from before tasks were recorded are segmentation
    if task not in EVALUATORS:
        raise InputError(f"the checkpoint is a '{task}' model, which this ssmseg cannot evaluate; "
                         f"it evaluates {', '.join(EVALUATORS)}")  # fmt: skip
    return EVALUATORS[task]


def evaluate(
    cfg: Config, checkpoint: Path, out: Path | None, inputs: list[Path], masks: list[Path], dataset: Path | None
) -> EvalResult:
    """Evaluate or predict; writes into ``out`` (default: the run folder's ``eval/``)."""
    state = ckpt.load(checkpoint)
    run = evaluator_for(state)
    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent.parent
    out = Path(out) if out is not None else run_dir / "eval"
    if masks and len(masks) != len(inputs):
        raise ConfigError(f"{len(masks)} masks for {len(inputs)} inputs; give one --mask per --input, in order")
    rt = setup_runtime(cfg.runtime)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "vis").mkdir(parents=True)
    try:
        result = run(cfg, state, rt.device, tmp, inputs, masks, dataset)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        result.out = out
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutdown(rt)
