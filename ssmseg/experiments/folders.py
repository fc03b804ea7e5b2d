"""Where runs, cv folds and evaluations are written: folders created exclusively, through ``ssmseg.outputs``
(a new name when one exists; only a folder this same command wrote is continued)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ssmseg.config import Config, dump_config
from ssmseg.outputs import RUN_FILES, OutputError, claim, create_folder, describe, pick_name
from ssmseg.progress import info

# What a cv folder may hold and still be continued: its folds (and evaluations of them) and the summary.
CV_FILES = (
    "cv_summary.json",
    "cv_summary.csv",
    "fold_*/.ssmseg.json",
    "fold_*/eval/*",
    *(f"fold_*/{p}" for p in RUN_FILES),
)


def config_key(cfg: Config, **extra: Any) -> dict[str, Any]:
    """What identifies a run's (or cv's) outputs: its config without the runtime settings."""
    data = yaml.safe_load(dump_config(cfg))
    data.pop("runtime", None)
    return {**data, **extra}


def create_run_folder(run_dir: Path, cfg: Config, exact: bool) -> tuple[Path, Config]:
    """Create the run folder exclusively (a new name when it exists, unless ``exact``: a cv fold); return it
    and the config with the name it really got."""
    created = create_folder(
        run_dir,
        "run",
        config_key(cfg),
        unique=not exact,
        patterns=RUN_FILES,
        about=f"ssmseg train, model {cfg.model.name}",
        option="--out",
    )
    if created != Path(run_dir):
        info(
            f"'{run_dir}' already holds {describe(run_dir)}; this run is written to '{created}' "
            f"(to continue that run: ssmseg train --resume {run_dir})"
        )
        cfg = cfg.model_copy(deep=True)
        cfg.runtime.name = created.name
    return created, cfg


def cv_folder(root: Path, cfg: Config, k: int) -> Path:
    """The cv folder: ``root`` when it is new, or our own cv folder of this same config and fold count (its
    completed folds are kept); otherwise a new name beside it."""
    key = config_key(cfg, folds=k)
    try:
        if claim(root, "cv", key, option="runtime.name") == "same":
            return root
    except OutputError:
        pass
    created = create_folder(root, "cv", key, patterns=CV_FILES, about=f"ssmseg cv, {k} folds", option="--out")
    if created != Path(root):
        info(f"'{root}' already holds {describe(root)}; this cross-validation is written to '{created}'")
    return created


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder of a checkpoint file (or the folder itself)."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def eval_folder(
    checkpoint: Path, out: Path | None, key: dict[str, Any], inputs: list[Path], dataset: Path | None = None
) -> Path:
    """Where an evaluation goes: ``--out`` when it is new, empty, or this same evaluation; by default a new
    subfolder of the run's ``eval/`` per evaluation (``test``, ``<scene>``, then ``-2``, ``-3``, ...)."""
    if out is not None:
        claim(
            out,
            "eval",
            key,
            mismatch=f"'{out}' holds outputs of another evaluation; choose another --out (or leave --out out: each "
            "evaluation gets its own folder under the run's eval/)",
        )
        return Path(out)
    if inputs:
        name = Path(inputs[0]).stem + (f"-and-{len(inputs) - 1}-more" if len(inputs) > 1 else "")
    else:
        name = "test" if dataset is None else f"test-{Path(dataset).name}"
    return pick_name(run_folder_of(checkpoint) / "eval", name, "eval", key)
