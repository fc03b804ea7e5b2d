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
    checkpoint: Path = typer.Argument(
        ..., help="A run folder (its best.pt), a checkpoint file, or an exported model (ssmseg export)."
    ),
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
    samples: int | None = typer.Option(
        None, "--samples", min=1, help="Reconstruction: K samples per field (reconstruction.samples)."
    ),
) -> None:
    """Sliding-window inference with blending (eval.*), per-class metrics, GeoTIFF outputs and panels."""
    from ssmseg.experiments.evaluate import check_model_unchanged, evaluate, load_for_eval

    state = load_for_eval(checkpoint)  # a bad checkpoint is reported before anything else
    base = ("checkpoint config", {k: v for k, v in state["config"].items() if k != "runtime"})
    extra = [f"reconstruction.samples={samples}"] if samples is not None else []
    cfg = resolve_config(config, preset, [*(set_ or []), *extra], device=device, base=base)
    check_model_unchanged(cfg, state)
    result = evaluate(cfg, checkpoint, out, list(inputs or []), list(masks or []), dataset)
    for note in result.warnings:
        typer.echo(f"warning: {note}", err=True)
    if result.metrics and "per_fraction" in result.metrics:  # fields at several observed fractions
        _reconstruction_table(result.metrics)
    elif result.metrics:
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
        major, drawn, own = chance["majority_class"], chance["class_prior_draw"], chance.get("scored_majority")
        typer.echo(
            f"chance on the same pixels: the training split's majority class ({major['class']}) OA "
            f"{major['oa']:.4f} mIoU {major['miou']:.4f}; prior draw mIoU {drawn['miou']:.4f}"
        )
        if own:
            typer.echo(
                f"the evaluated pixels' own majority class ({own['class']}) has OA {own['oa']:.4f}: the real "
                "floor of OA"
            )
        for name, b in (m.get("baselines") or {}).get("methods", {}).items():
            typer.echo(f"baseline {name} on the same pixels and classes: OA {b['oa']:.4f} mIoU {b['miou']:.4f}")
    typer.echo(f"wrote {result.out}")


def _reconstruction_table(m: dict) -> None:
    p = m["protocol"]
    table = Table(
        title=f"test fields: {p['solver']} {p['steps']} steps ({p['nfe_per_sample']} NFE), K={p['samples']}; "
        "PSNR/SSIM/RMSE on unobserved pixels"
    )
    for col in ("observed", "fields", "PSNR 1", f"PSNR mean {p['samples']}", "SSIM 1", "RMSE 1", "coverage 90%"):
        table.add_column(col, justify="right")
    for r in m["per_fraction"]:
        cov = f"{r['coverage90']:.3f}" if "coverage90" in r else "-"
        table.add_row(
            f"{r['fraction']:.0%}",
            str(r["fields"]),
            f"{r['psnr_sample']:.2f}",
            f"{r['psnr_mean']:.2f}",
            f"{r['ssim_sample']:.4f}",
            f"{r['rmse_sample']:.4g}",
            cov,
        )
    Console().print(table)
