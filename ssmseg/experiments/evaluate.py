"""``ssmseg eval``: load a checkpoint, dispatch on the task it records, and own the output folder.

Outputs are built in a temporary folder and moved in place when complete; the task's evaluator
(``tasks/<task>/evaluate.py``) writes the files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ssmseg import outputs
from ssmseg.config import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments import guards
from ssmseg.tasks.results import EvalResult, PartialResult

Evaluator = Callable[[Config, dict[str, Any], torch.device, Path, list[Path], list[Path], Path | None], EvalResult]


def _segmentation(*args: Any) -> EvalResult:
    from ssmseg.tasks.segmentation.evaluate import run

    return run(*args)


def _reconstruction(*args: Any) -> EvalResult:
    from ssmseg.tasks.reconstruction.evaluate import run

    return run(*args)


EVALUATORS: dict[str, Evaluator] = {"segmentation": _segmentation, "reconstruction": _reconstruction}


# Cross-validation: score a fold's checkpoint once on the held-out fold (cfg, checkpoint state, dataset, fold,
# device) -> {"metrics", "per_class_iou", "scored_on", "selected_on", "protocol", ...}. A task without one
# reports its validation metrics in cv (and the summary says so).
Scorer = Callable[[Config, dict[str, Any], Path, int, torch.device], dict[str, Any]]


def _segmentation_score(*args: Any) -> dict[str, Any]:
    from ssmseg.tasks.segmentation.evaluate import score_heldout

    return score_heldout(*args)


SCORERS: dict[str, Scorer] = {"segmentation": _segmentation_score}


def scorer_for(task: str) -> Scorer | None:
    return SCORERS.get(task)


def load_for_eval(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint, or the metadata of an exported model (``ssmseg export``) that eval runs through its runtime."""
    from ssmseg.experiments import exported

    if exported.model_file(checkpoint) is not None:
        return exported.load_state(checkpoint)
    return ckpt.load(checkpoint)


def evaluator_for(state: dict[str, Any]) -> Evaluator:
    task = state.get("task", "segmentation")  # checkpoints from before tasks were recorded are segmentation
    if "exported" in state and task == "segmentation":
        from ssmseg.experiments.exported import evaluate_exported

        return evaluate_exported
    if task not in EVALUATORS:
        raise InputError(f"the checkpoint is a '{task}' model, which this ssmseg cannot evaluate; "
                         f"it evaluates {', '.join(EVALUATORS)}")  # fmt: skip
    return EVALUATORS[task]


def evaluate(
    cfg: Config, checkpoint: Path, out: Path | None, inputs: list[Path], masks: list[Path], dataset: Path | None
) -> EvalResult:
    """Evaluate or predict into ``out`` (new, empty, or this same evaluation's), by default a new folder under
    the run's ``eval/``; never into a folder eval did not write."""
    state = load_for_eval(checkpoint)
    run = evaluator_for(state)
    if masks and len(masks) != len(inputs):
        raise ConfigError(f"{len(masks)} masks for {len(inputs)} inputs; give one --mask per --input, in order")
    if "exported" in state:
        checkpoint = Path(state["exported"]["path"])
    key = guards.eval_key(checkpoint, state, inputs, masks, dataset, cfg)
    if "exported" in state and out is None:  # by default the run's eval/, not the export folder
        from ssmseg.experiments.exported import eval_parent

        name = (Path(inputs[0]).stem if inputs else "test") + f"-{state['exported']['format']}"
        out = outputs.pick_name(eval_parent(checkpoint), name, "eval", key)
    out = guards.eval_folder(checkpoint, out, key, inputs, dataset)  # a new folder, or this same evaluation redone
    rt = setup_runtime(cfg.runtime)
    tmp = outputs.staging(out)
    (tmp / "vis").mkdir()
    try:
        result = run(cfg, state, rt.device, tmp, inputs, masks, dataset)
        guards.record_evaluated(tmp, result.metrics, guards.evaluated(checkpoint, state))
        result.warnings += guards.trained_on(state, inputs)
        result.out = outputs.publish(tmp, out, "eval", key, about=f"ssmseg eval of {checkpoint}")
        return result
    except PartialResult as partial:  # some scenes finished: they are kept, with a note of what is missing
        total = len(partial.finished) + len(partial.missing)
        outputs.publish(
            tmp,
            out,
            "eval",
            key,
            about=f"ssmseg eval of {checkpoint} (incomplete: {len(partial.finished)} of {total} scenes)",
        )
        raise partial.error(out) from None
    except BaseException:
        outputs.discard(tmp)
        raise
    finally:
        shutdown(rt)
