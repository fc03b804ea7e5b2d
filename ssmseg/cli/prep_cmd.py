"""``ssmseg prep``: scenes -> a leak-free dataset folder; ``--check`` validates without writing."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, PresetOpt, SetOpt, resolve_config
from ssmseg.errors import InputError, UsageError


@app.command("prep")
def prep(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    out: Path | None = typer.Option(None, "--out", "-o", help="Dataset folder to write (prep.out)."),
    synthetic: str | None = typer.Option(
        None, "--synthetic", help="Prepare built-in generated data: hyperspectral or rgb scenes, or sinusoids fields."
    ),
    check: Path | None = typer.Option(
        None,
        "--check",
        help="Validate without writing anything: a prepared dataset folder, a config file, or (with --preset or "
        "--config) the folder a dataset was downloaded into, its files as the preset names them.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a dataset that prep wrote from other inputs (never any other folder)."
    ),
) -> None:
    """Cut scenes into normalised-on-load patches with spatial, stratified, leak-free splits and folds."""
    from ssmseg.data.builtin import prepare_sinusoids, prepare_synthetic
    from ssmseg.data.check import check_dataset, check_sources
    from ssmseg.data.manifest import holds
    from ssmseg.data.shipped import is_download, rooted
    from ssmseg.tasks import task_life

    if check is not None:
        if not check.exists():
            raise UsageError(
                f"--check '{check}' does not exist; give a prepared dataset folder, a config file, or "
                "(with --preset or --config) the folder the dataset was downloaded into"
            )
        if (preset or config) and is_download(check):  # a download laid out as the dataset ships
            report = check_sources(rooted(resolve_config(config, preset, set_), check))
        else:
            report = check_dataset(check) if check.is_dir() else check_sources(resolve_config(check, preset, set_))
        for note in report.notes:
            typer.echo(note)
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        if report.problems:
            raise InputError(f"{check}: {len(report.problems)} problem(s) found; fix them and run --check again")
        typer.echo(f"{check}: ok")
        return
    cfg = resolve_config(config, preset, set_)
    target = out or cfg.prep.out
    if synthetic is not None:
        if synthetic not in ("hyperspectral", "rgb", "sinusoids"):
            raise UsageError(f"--synthetic '{synthetic}': choose hyperspectral, rgb or sinusoids")
        if synthetic == "sinusoids":
            result = prepare_sinusoids(cfg, None if target is None else Path(target), force)
        else:
            result = prepare_synthetic(cfg, synthetic, target, force)
    else:
        if target is None:
            raise UsageError("say where to write the dataset: --out DIR (or prep.out in the config)")
        result = task_life(cfg.task.name).prep(cfg, Path(target), force)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    if result.up_to_date:
        typer.echo(f"{result.out}: up to date (same inputs and settings); nothing to do")
        return
    if holds(result.manifest) == "fields":
        m = result.manifest
        typer.echo(
            f"{m['count']} fields of {m['channels']}x{m['size'][0]}x{m['size'][1]}: "
            + ", ".join(f"{k} {v}" for k, v in m["counts"].items())
        )
    else:
        _summary(result.manifest)
    typer.echo(f"wrote {result.out}")


def _summary(manifest: dict) -> None:
    table = Table(title=f"{len(manifest['patches'])} patches of {manifest['crop_size']} px: labelled pixels per class")
    table.add_column("class")
    keys = list(manifest["class_counts"])
    for key in keys:
        table.add_column(key, justify="right")
    for k, name in enumerate(manifest["classes"]):
        table.add_row(name, *(str(manifest["class_counts"][key][k]) for key in keys))
    Console().print(table)
    cv_train = manifest.get("cv_train_counts")
    if cv_train:  # what `ssmseg cv` trains on when it holds out each fold (datasets of older versions lack it)
        parts = []
        for key, row in cv_train.items():
            lacks = [manifest["classes"][k] for k, n in enumerate(row) if not n]
            parts.append(f"{key} {sum(row)} px" + (f" (no {', '.join(lacks)})" if lacks else ""))
        typer.echo(f"cv training part (the train split outside the fold): {'; '.join(parts)}")
