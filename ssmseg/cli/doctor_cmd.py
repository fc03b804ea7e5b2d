"""``ssmseg doctor``: what this machine has, and which selective-scan backend each device will use."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app


@app.command("doctor")
def doctor() -> None:
    """Print Python, torch, CUDA, devices, mamba-ssm, scan backends, rasterio/GDAL and CPU threads."""
    from ssmseg.doctor import collect  # imports torch: only when asked, not for every command

    table = Table(title="ssmseg doctor", show_header=True)
    table.add_column("item")
    table.add_column("value", overflow="fold")
    for key, value in collect():
        table.add_row(key, value)
    Console(width=max(100, Console().width)).print(table)
    typer.echo("")
