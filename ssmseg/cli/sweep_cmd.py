"""``ssmseg sweep-steps``: reconstruction quality against ODE solver and step count, beside baselines."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, DeviceOpt, PresetOpt, SetOpt, resolve_config


def _f(x: object, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "-"


@app.command("sweep-steps")
def sweep_cmd(
    run: Path = typer.Argument(..., help="A reconstruction run folder (its best.pt) or a checkpoint file."),
    fields: Path | None = typer.Option(None, "--fields", help="Field dataset whose test fields to use (the run's)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="New or empty output folder (RUN/sweep, sweep-2, ...)."),
    samples: int | None = typer.Option(None, "--samples", "-k", min=1, help="Samples K per field (sweep.samples, 8)."),
    full: bool = typer.Option(
        False,
        "--full",
        help="Every solver at 1-200 steps on 100 fields (hours on CPU); "
        "the default is a small grid (euler, midpoint at 1-8 steps on 16 fields).",
    ),
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
) -> None:
    """PSNR/SSIM/RMSE, calibration, spectra, NFE and solver error for each solver x step count (sweep.*), with
    classical baselines on the same fields and pixels: sweep.csv, sweep.json, figures, conclusions."""
    from ssmseg.experiments.sweep import load_run, step_sweep, sweep_steps

    _, state = load_run(run)  # a missing checkpoint or a segmentation run is reported before anything else
    base = ("checkpoint config", {k: v for k, v in state["config"].items() if k not in ("runtime", "sweep")})
    grid = (
        [
            f"sweep.{k}=[{','.join(map(str, v))}]" if isinstance(v, list) else f"sweep.{k}={v}"
            for k, v in step_sweep(state, run).full_grid.items()
        ]
        if full
        else []
    )
    overrides = [*grid, *(set_ or []), *([f"sweep.samples={samples}"] if samples is not None else [])]
    cfg = resolve_config(config, preset, overrides, device=device, base=base)
    result = sweep_steps(cfg, run, fields, out)
    k = cfg.sweep.samples
    table = Table(
        title=f"{result.protocol['fields']} test fields, K = {k}: PSNR (dB) and SSIM on unobserved pixels, "
        "of one sample (1) and of the mean (K)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("solver", "steps", "NFE", "sec", "PSNR 1", f"PSNR {k}", f"SSIM {k}", "cov90", "spread", "solver err"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result.rows:
        table.add_row(
            r["solver"],
            "-" if r["steps"] is None else str(r["steps"]),
            str(r["nfe"]),
            _f(r["seconds"], 1),
            _f(r["psnr_sample"]),
            _f(r["psnr_mean"]),
            _f(r["ssim_mean"], 3),
            _f(r["coverage90"], 3),
            _f(r["spread"], 3),
            f"{r['solver_error']:.1e}",
        )
    for b in result.baselines:
        table.add_row(
            f"[dim]{b['name']}[/dim]", "", "", _f(b["seconds"], 1), _f(b["psnr"]), "", _f(b["ssim"], 3), "", "", ""
        )
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)  # logs: no truncated columns
    for line in result.conclusions:
        typer.echo(f"- {line}")
    typer.echo(f"wrote {result.out}")
