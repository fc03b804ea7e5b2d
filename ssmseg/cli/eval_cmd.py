"""``ssmseg eval``: metrics on the test split, or whole-scene predictions as georeferenced GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ssmseg.cli.app import app
from ssmseg.cli.options import ConfigOpt, DeviceOpt, PresetOpt, SetOpt, resolve_config


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="A run folder (its best.pt) or a checkpoint file."),
    inputs: list[Path] | None = typer.Option(None, "--input", "-i", help="Scene to predict; repeatable."),
    masks: list[Path] | None = typer.Option(None, "--mask", "-m", help="Ground truth for each --input, in order."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Prepared dataset (default: the run's)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="A new output folder (default: a new subfolder of RUN/eval per evaluation)."
    ),
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Sliding-window inference with blending (eval.*), per-class metrics, GeoTIFF outputs and panels."""
    from ssmseg.engine import checkpoint as ckpt
    from ssmseg.experiments.evaluate import evaluate

    state = ckpt.load(checkpoint)  # a bad checkpoint is reported before anything else
    base = ("checkpoint config", {k: v for k, v in state["config"].items() if k != "runtime"})
    cfg = resolve_config(config, preset, set_, device=device, base=base)
    result = evaluate(cfg, checkpoint, out, list(inputs or []), list(masks or []), dataset)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    if result.metrics:
        m = result.metrics
        table = Table(
            title=f"OA {m['oa']:.4f}  mIoU {m['miou']:.4f}  mean F1 {m['mean_f1']:.4f}  kappa {m['kappa']:.4f}"
        )
        for col in ("class", "IoU", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="right")
        for name, c in m["per_class"].items():
            cells = (f"{c[k]:.4f}" if c[k] is not None else "-" for k in ("iou", "precision", "recall", "f1"))
            table.add_row(name, *cells, str(c["support"]))
        Console().print(table)
        chance = m["chance"]
        major, drawn = chance["majority_class"], chance["class_prior_draw"]
        typer.echo(f"chance on the same pixels: majority class ({major['class']}) mIoU {major['miou']:.4f}, "
                   f"prior draw mIoU {drawn['miou']:.4f}")  # fmt: skip
    typer.echo(f"wrote {result.out}")
