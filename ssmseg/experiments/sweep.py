"""``ssmseg sweep-steps``: how a trained field model's reconstructions depend on the ODE solver and its step
count, beside classical baselines, on the same test fields, observed pixels and starting noise. What is
solved and measured is the task's (``TaskLife.step_sweep``: ``tasks/reconstruction/sweep.py`` describes
every number); this module finds the run and owns the output folder.

Outputs go into a new folder (``RUN/sweep``, ``sweep-2``, ..., created exclusively, or a new or empty
``--out``), built in a staging folder beside it and moved onto it when complete, with the ``.ssmseg.json``
marker of ``ssmseg.outputs`` (kind ``sweep``): nothing that existed is replaced or removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssmseg import outputs
from ssmseg.config import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import UsageError
from ssmseg.experiments.folders import run_folder_of
from ssmseg.tasks import life_of
from ssmseg.tasks.life import StepSweep
from ssmseg.tasks.results import SweepResult


def step_sweep(state: dict[str, Any], run: Path) -> StepSweep:
    """What the task of a checkpoint state sweeps (a usage error, exit 2, for a task without an ODE sampler)."""
    return life_of(state).step_sweep(run)


def load_run(run: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of a run to sweep (a run folder's best.pt, else latest.pt, or a checkpoint file)
    and its state; a missing checkpoint or a run of another task is a usage error (exit 2)."""
    run = Path(run)
    if run.is_dir():
        found = [p for p in (run / "checkpoints" / "best.pt", run / "checkpoints" / "latest.pt") if p.is_file()]
        if not found:
            raise UsageError(
                f"'{run}' has no checkpoint (checkpoints/best.pt or latest.pt); train it first, or give "
                "a checkpoint file"
            )
        path = found[0]
    elif run.is_file():
        path = run
    else:
        raise UsageError(f"'{run}' does not exist; give a reconstruction run folder or a checkpoint file")
    state = ckpt.load(path)
    step_sweep(state, run)  # a run of a task without an ODE sampler is a usage error
    return path, state


def check_out(out: Path | None) -> None:
    """A given ``--out`` must be new or an empty folder, reachable (no file on the way); checked before any work."""
    if out is None:
        return
    out = Path(out)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise outputs.OutputError(
            f"'{out}' already holds {outputs.describe(out)}; sweep-steps writes only into a "
            "new or empty folder: choose another --out"
        )
    outputs.claim(out, "sweep", option="--out")


def sweep_key(path: Path, state: dict[str, Any], cfg: Config, fields: Path | None) -> dict[str, Any]:
    """Everything that determines a sweep's outputs (its marker's inputs)."""
    return {
        "checkpoint": str(Path(path).resolve()),
        "epoch": state.get("epoch"),
        "fields": str(Path(fields).resolve()) if fields is not None else str(state.get("dataset")),
        "sweep": cfg.sweep.model_dump(mode="json"),
        "seed": cfg.reconstruction.seed,
        "observed": cfg.reconstruction.observed,
    }


def reserve_output(out: Path | None, run_dir: Path, key: dict[str, Any], about: str) -> tuple[Path, bool]:
    """The (empty or marker-only) output folder and whether it was created here: ``--out`` when it is new or
    empty, else RUN/sweep, RUN/sweep-2, ... (the first name free, created exclusively and marked)."""
    if out is not None and Path(out).is_dir():
        check_out(out)
        return Path(out), False  # the user's empty folder: the staged output is renamed onto it
    dest = run_dir / "sweep" if out is None else Path(out)
    return outputs.create_folder(dest, "sweep", key, unique=out is None, about=about), True


def sweep_steps(cfg: Config, run: Path, fields: Path | None = None, out: Path | None = None) -> SweepResult:
    """Run the sweep for ``run`` (a run folder or checkpoint) and write its folder; see the module docstring."""
    path, state = load_run(run)
    check_out(out)
    run_dir = run_folder_of(path)
    key, about = sweep_key(path, state, cfg, fields), f"ssmseg sweep-steps of {path}"
    rt = setup_runtime(cfg.runtime)
    try:
        prepared = step_sweep(state, run).prepare(cfg, state, fields, rt.device)
        dest, created = reserve_output(out, run_dir, key, about)
        tmp = None
        try:
            tmp = outputs.staging(dest)
            result = prepared.run(path, run_dir, tmp)
            result.out = outputs.publish(tmp, dest, "sweep", key, about=about)  # onto the folder reserved above
        except BaseException:
            outputs.discard(tmp)
            if created:
                outputs.remove_own(dest, "sweep", option="--out")
            raise
        return result
    finally:
        shutdown(rt)
