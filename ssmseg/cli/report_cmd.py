"""``ssmseg report``: markdown, self-contained HTML, JSON and plots from run, cv, eval or sweep folders."""

from __future__ import annotations

from pathlib import Path

import typer

from ssmseg.cli.app import app
from ssmseg.errors import UsageError


@app.command("report")
def report_cmd(
    paths: list[Path] = typer.Argument(..., help="Run, cv, eval or sweep folders; several runs are overlaid."),
    vs: Path | None = typer.Option(
        None, "--vs", help="A previous run (or cv) folder to compare each run (or cv folder) with."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder: new, empty, or this same report (default: PATH/report, report-2...)."
    ),
) -> None:
    """Summary, curves, training stages, findings with their evidence, and comparisons (report.md/.html/.json)."""
    for path in [*paths, *([vs] if vs is not None else [])]:
        if not path.exists():
            raise UsageError(f"'{path}' does not exist; give a run, cv, eval or sweep folder")
        if not path.is_dir() and not path.is_file():  # /dev/null, a socket, a pipe
            raise UsageError(f"'{path}' is neither a folder nor a file; give a run, cv, eval or sweep folder")
    if vs is not None and not vs.is_dir():
        raise UsageError(f"--vs '{vs}' is not a folder; give the previous run's folder")
    from ssmseg.report import make_report

    result = make_report(paths, vs=vs, out=out)
    for line in result.headlines:
        typer.echo(line)
    for f in result.findings:
        typer.echo(f"{f['severity']}: [{f['rule']}] {f['source']}: {f['message']}", err=True)
    if result.missing:
        typer.echo(f"{len(result.missing)} item(s) missing or inferred: see the report", err=True)
    typer.echo(f"wrote {result.out}")
