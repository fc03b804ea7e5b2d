"""``ssmseg export``: a trained segmentation model as an ONNX or TorchScript file, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from ssmseg.cli.app import app


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A run folder (its best.pt) or a checkpoint file."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx (needs ssmseg[export]) or torchscript."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="A new output folder (default: RUN/export/<format>, then -2, -3, ...)."
    ),
) -> None:
    """Export for deployment (Mamba models included: the scan is exported as a loop), with the band order,
    normalisation and classes in the file's metadata; `ssmseg eval` accepts the result."""
    from ssmseg.experiments.export import export_model

    result = export_model(checkpoint, fmt, out)
    check, exported = result.meta["exported"]["check"], result.meta["exported"]
    size = exported["input"]["size"]
    sizes = ", ".join(f"{h}x{w}" for h, w in check["sizes"])
    typer.echo(
        f"checked against PyTorch at {sizes}: max |difference| {check['max_abs_diff']:.2e} "
        f"(largest logit {check['max_abs_logit']:.3g}; tolerance {check['tolerance']:g} relative), "
        f"argmax agreement {check['argmax_agreement']:.4%}"
    )
    if size != "any":
        typer.echo(
            f"warning: this model's graph does not generalise over the image size "
            f"({check.get('any_size_failed')}); exported for {size[0]}x{size[1]} inputs",
            err=True,
        )
    typer.echo(
        f"input 'image' (N, {result.meta['in_channels']}, H, W) float32, normalised per band as in the "
        f"metadata ('ssmseg' key); output 'logits' (N, {result.meta['num_classes']}, H, W)"
    )
    typer.echo(f"wrote {result.file}")
