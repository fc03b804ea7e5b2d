"""``ssmseg train``, ``ssmseg cv`` and ``ssmseg models``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, DeviceOpt, OutOpt, PresetOpt, SeedOpt, SetOpt, resolve_config


@app.command("train")
def train_cmd(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this folder exactly (its own config; --set on top is the change)."
    ),
    force: bool = typer.Option(False, "--force", help="Resume even though the change alters the run."),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Start a new run from this run's (or checkpoint's) matching weights (finetune.init); freeze parts with "
        "--set finetune.freeze=[encoder,ssm].",
    ),
) -> None:
    """Train a model: segmentation, or reconstruction with task.name=reconstruction (on the built-in synthetic
    data when data.dataset is empty)."""
    from ssmseg.errors import UsageError
    from ssmseg.experiments.resume import check_resume, run_config
    from ssmseg.experiments.train import check_config, train
    from ssmseg.tasks import task_life

    base = None
    if resume is not None:  # start from what ran; options given now are the change
        if init is not None:
            raise UsageError(
                "--init starts a new run from another run's weights and --resume continues a run (which "
                "keeps its own finetune.init); give one of them"
            )
        base = (f"run config '{resume / 'config.yaml'}'", run_config(resume))
    explicit = {"finetune": {"init": str(init.resolve())}} if init is not None else None
    cfg = resolve_config(config, preset, set_, out=out, device=device, seed=seed, base=base, explicit=explicit)
    if resume is not None:
        done = check_resume(resume, cfg, force, base[1])
        if done:  # nothing to do: nothing is written
            typer.echo(done)
            return
    check_config(cfg)  # before the built-in dataset is prepared or anything is built
    task_life(cfg.task.name).check_config(cfg)
    result = train(cfg, resume=resume, force=force)
    best = result.best
    kept = "kept the last epoch (train.select: last):" if cfg.train.select == "last" else "best"
    typer.echo(f"{result.stop_reason}; {kept} {result.monitor} {best['value']:.4f} at epoch {best['epoch']}")
    typer.echo(f"run folder: {result.run_dir}")


@app.command("cv")
def cv_cmd(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    folds: int | None = typer.Option(None, "--folds", min=2, help="Number of folds (default cv.folds)."),
    force: bool = typer.Option(False, "--force", help="Retrain folds that already completed."),
) -> None:
    """k-fold cross-validation: per fold, train on the other folds' train split, pick the best epoch on their
    val split, then score the held-out fold once; each fold's metrics and mean +- std."""
    from ssmseg.experiments.cv import run_cv
    from ssmseg.experiments.train import check_config
    from ssmseg.tasks import task_life

    cfg = resolve_config(config, preset, set_, out=out, device=device, seed=seed)
    check_config(cfg)
    task_life(cfg.task.name).check_config(cfg)
    summary = run_cv(cfg, folds, force)
    console = Console()
    heading, table = cv_table(summary, console.width)
    console.print(heading, highlight=False)
    console.print(table)
    typer.echo(summary["note"])
    typer.echo(f"summary: {summary['run_dir']}/cv_summary.json and .csv")


def cv_table(summary: dict, width: int) -> tuple[str, Table]:
    """cv's final heading and table, one row per metric (held-out scores first) and a column per fold (named as its
    folder, fold_K), then mean and std: its width grows with the folds, not with the metrics, so it reads at 100
    columns. Folds that do not fit ``width`` are left to cv_summary.csv and only the mean and std are shown."""
    scored = [m for m in summary["metrics"] if m.startswith("heldout/")]
    metrics = [*scored, summary["monitor"]] if scored else summary["metrics"]
    rows = summary["folds"]

    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, int | float) else "-"

    label = max(len(m) for m in [*metrics, "best epoch"])
    per_fold = label + 4 + (len(rows) + 2) * 11 <= width  # a cell of 0.1234 or -12.3456 with its padding
    note = "" if per_fold else f"; {len(rows)} folds do not fit {width} columns: each fold is in cv_summary.csv"
    kept = (
        "the last epoch of each fold (train.select: last)"
        if summary.get("select") == "last"
        else f"best epoch by {summary['monitor']} on the val split outside each fold"
    )
    heading = (
        f"cross-validation ({len(rows)} folds): {kept}; "
        + ("held-out fold scored once" if scored else "not scored (validation metrics)")
        + note
    )
    table = Table()
    table.add_column("metric", no_wrap=True)
    for r in rows if per_fold else []:
        table.add_column(f"fold_{r['fold']}", justify="right", no_wrap=True)
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("std", justify="right", no_wrap=True)
    epochs = [str(r["best_epoch"]) for r in rows] if per_fold else []
    table.add_row("best epoch", *epochs, "", "")
    for m in metrics:
        folds = [cell(r.get(m)) for r in rows] if per_fold else []
        table.add_row(m, *folds, cell(summary["mean"][m]), cell(summary["std"][m]))
    return heading, table


@app.command("models")
def models_cmd(
    bands: int = typer.Option(32, min=1, help="Input bands used to count parameters."),
    classes: int = typer.Option(5, min=1, help="Classes used to count parameters."),
) -> None:
    """List the registered models with their parameter counts (default sizes and tiny variants)."""
    from ssmseg.config.schema import ModelConfig
    from ssmseg.models.registry import MODELS, build_model, count_parameters

    table = Table(title=f"models (segmentation: {bands} bands, {classes} classes; reconstruction: 1-channel fields)")
    for col in ("name", "task", "parameters", "tiny", "what"):
        table.add_column(col)
    for name, entry in MODELS.items():
        c = bands if entry.classes else 1  # a model of values (fields) is counted on one channel
        full = count_parameters(build_model(ModelConfig(name=name), c, classes))
        tiny = count_parameters(build_model(ModelConfig(name=name), c, classes, tiny=True))
        table.add_row(name, entry.task, f"{full:,}", f"{tiny:,}", entry.summary)
    Console(width=140).print(table)
