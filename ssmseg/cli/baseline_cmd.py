"""``ssmseg baseline``: majority class, logistic regression and a random forest on a prepared dataset, scored
on the same test pixels with the same metrics as ``ssmseg eval``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, PresetOpt, SeedOpt, SetOpt, resolve_config


@app.command("baseline")
def baseline_cmd(
    dataset: Path = typer.Argument(..., help="A prepared dataset folder (from `ssmseg prep`)."),
    fold: int | None = typer.Option(
        None, "--fold", help="Fit on the other cv folds and score on fold K (default: train split vs test split)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="A new output folder (default: runtime.out_dir/baseline_<dataset>[_fold<K>])."
    ),
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Classical per-pixel baselines (baseline.*): the floor a network must beat, on eval's test pixels."""
    from ssmseg.tasks import task_life

    cfg = resolve_config(config, preset, set_, seed=seed)
    result = task_life(cfg.task.name).baseline(cfg, dataset, fold, out)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    r = result.results
    used = r["train_pixels"]
    table = Table(
        title=f"scored on the {r['scored_on']} ({r['test_pixels']} labelled pixels); fitted on {used['used']} of "
        f"{used['labelled']} labelled training pixels"
    )
    for col in ("method", "OA", "mIoU", "mean F1", "kappa", "seconds"):
        table.add_column(col, justify="right")
    for name, m in r["methods"].items():
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("oa", "miou", "mean_f1", "kappa")), f"{m['seconds']:.1f}")
    Console().print(table)
    own = r["scored_majority"]
    typer.echo(
        f"majority predicts the training split's most frequent class; the {r['scored_on']}'s own majority "
        f"({own['class']}) has OA {own['oa']:.4f}, the real floor of OA"
    )
    typer.echo(f"wrote {result.out}")
