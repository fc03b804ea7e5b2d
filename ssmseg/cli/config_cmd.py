"""``ssmseg config``: show the resolved config, validate a file, list presets, render the reference."""

from __future__ import annotations

from pathlib import Path

import typer

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, DeviceOpt, OutOpt, PresetOpt, SeedOpt, SetOpt, resolve_config
from ssmseg.config import available_presets, dump_config
from ssmseg.config.reference import render_reference

config_app = typer.Typer(help="Inspect and validate configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Print the fully resolved config (exactly what a command would run) as YAML."""
    cfg = resolve_config(config, preset, set_, out=out, device=device, seed=seed)
    typer.echo(dump_config(cfg), nl=False)


@config_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="YAML config file to check."),
    preset: PresetOpt = None,
    set_: SetOpt = None,
) -> None:
    """Check a config file (over an optional preset); every problem is listed at once."""
    resolve_config(file, preset, set_)
    typer.echo(f"{file}: valid")


@config_app.command("presets")
def presets() -> None:
    """List the shipped presets."""
    for name in available_presets():
        typer.echo(name)


@config_app.command("reference")
def reference() -> None:
    """Print the Markdown config reference generated from the schema (docs/config.md)."""
    typer.echo(render_reference(), nl=False)
