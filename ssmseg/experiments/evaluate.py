"""``ssmseg eval``: load a checkpoint, ask the task it records to evaluate (``TaskLife.evaluate``), and own
the output folder.

Outputs are built in a temporary folder and moved in place when complete; the task writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssmseg import outputs
from ssmseg.config import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import ConfigError
from ssmseg.experiments import provenance
from ssmseg.experiments.folders import eval_folder
from ssmseg.tasks import life_of
from ssmseg.tasks.results import EvalResult, PartialResult


def load_for_eval(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint, or the metadata of an exported model (``ssmseg export``) that eval runs through its runtime."""
    from ssmseg.experiments import exported

    if exported.model_file(checkpoint) is not None:
        return exported.load_state(checkpoint)
    return ckpt.load(checkpoint)


def check_model_unchanged(cfg: Config, state: dict[str, Any]) -> None:
    """eval runs the checkpoint's model: ``--set model.*`` that differs from it (``cfg`` is built on the
    checkpoint's config) is an error, not ignored."""
    saved = (state.get("config") or {}).get("model")
    if not isinstance(saved, dict):
        return
    asked = cfg.model.model_dump(mode="json")
    changed = sorted(k for k in asked.keys() & saved.keys() if asked[k] != saved[k] and k != "encoder_weights")
    if changed:
        shown = ", ".join(f"model.{k}={asked[k]!r}" for k in changed[:4])
        raise ConfigError(
            f"{shown}: eval runs the checkpoint's own model ({saved.get('name')}) and cannot change it; drop "
            "the model.* options (to evaluate another model, give its run)"
        )


def evaluate(
    cfg: Config, checkpoint: Path, out: Path | None, inputs: list[Path], masks: list[Path], dataset: Path | None
) -> EvalResult:
    """Evaluate or predict into ``out`` (new, empty, or this same evaluation's), by default a new folder under
    the run's ``eval/``; never into a folder eval did not write."""
    state = load_for_eval(checkpoint)
    life = life_of(state)
    if masks and len(masks) != len(inputs):
        raise ConfigError(f"{len(masks)} masks for {len(inputs)} inputs; give one --mask per --input, in order")
    if "exported" in state:
        checkpoint = Path(state["exported"]["path"])
    key = provenance.eval_key(checkpoint, state, inputs, masks, dataset, cfg)
    if "exported" in state and out is None:  # by default the run's eval/, not the export folder
        from ssmseg.experiments.exported import eval_parent

        name = (Path(inputs[0]).stem if inputs else "test") + f"-{state['exported']['format']}"
        out = outputs.pick_name(eval_parent(checkpoint), name, "eval", key)
    out = eval_folder(checkpoint, out, key, inputs, dataset)  # a new folder, or this same evaluation redone
    rt = setup_runtime(cfg.runtime)
    tmp = outputs.staging(out)
    (tmp / "vis").mkdir()
    try:
        if "exported" in state:
            from ssmseg.experiments.exported import evaluate_exported

            result = evaluate_exported(life, cfg, state, rt.device, tmp, inputs, masks, dataset)
        else:
            result = life.evaluate(cfg, state, rt.device, tmp, inputs, masks, dataset)
        provenance.record_evaluated(tmp, result.metrics, provenance.evaluated(checkpoint, state))
        result.warnings += life.input_warnings(state, inputs)
        result.out = outputs.publish(tmp, out, "eval", key, about=f"ssmseg eval of {checkpoint}")
        return result
    except PartialResult as partial:  # some scenes finished: they are kept, with a note of what is missing
        if isinstance(partial.cause, OSError):  # a full disk: the file the user asked for, not the staging path
            partial.cause = outputs.staged_error(partial.cause, tmp, out)
        total = len(partial.finished) + len(partial.missing)
        about = f"ssmseg eval of {checkpoint} (incomplete: {len(partial.finished)} of {total} scenes)"
        outputs.publish(tmp, out, "eval", key, about=about)
        raise partial.error(out) from None
    except OSError as exc:  # a full disk, a vanished folder: one line naming the output, not the staging folder
        outputs.discard(tmp)
        raise outputs.staged_error(exc, tmp, out) from None
    except BaseException:
        outputs.discard(tmp)
        raise
    finally:
        shutdown(rt)
