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
        None, "--synthetic", help="Prepare the built-in generated scene: hyperspectral or rgb."
    ),
    check: Path | None = typer.Option(
        None, "--check", help="Validate a dataset folder or a config file without writing anything."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a dataset that prep wrote from other inputs (never any other folder)."
    ),
) -> None:
    """Cut scenes into normalised-on-load patches with spatial, stratified, leak-free splits and folds."""
    from ssmseg.data.builtin import prepare_synthetic
    from ssmseg.data.check import check_dataset, check_sources
    from ssmseg.data.prepare import prepare

    if check is not None:
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
        if synthetic not in ("hyperspectral", "rgb"):
            raise UsageError(f"--synthetic '{synthetic}': choose hyperspectral or rgb")
        result = prepare_synthetic(cfg, synthetic, target, force)
    else:
        if target is None:
            raise UsageError("say where to write the dataset: --out DIR (or prep.out in the config)")
        result = prepare(cfg, Path(target), force)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    if result.up_to_date:
        typer.echo(f"{result.out}: up to date (same inputs and settings); nothing to do")
        return
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
