"""Reconstruction evaluation: the test fields of the run's dataset (or ``--dataset``), at each observed
fraction of ``reconstruction.eval_fractions``, solved with ``val_solver``/``val_steps``: PSNR, SSIM and RMSE
on unobserved pixels and on the whole field, for one sample and for the mean of K samples, with the
samples' spread and the coverage of their central 90% interval. Metrics in the data's units; PSNR's MAX is
the training fields' value range. ``ssmseg eval`` owns the output folder and calls ``run`` here."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmseg.config import Config
from ssmseg.data.field_dataset import FieldDataset
from ssmseg.data.fields import FieldStats, denormalize
from ssmseg.engine.logging import dumps
from ssmseg.errors import InputError, UsageError
from ssmseg.progress import progress_bar
from ssmseg.tasks.reconstruction.metrics import metrics_from_sums, reconstruction_sums, sample_sums
from ssmseg.tasks.reconstruction.sampling import draw_samples, load_field_model, sample_noise
from ssmseg.tasks.results import EvalResult

KEYS = ("psnr", "ssim", "rmse", "psnr_all", "ssim_all", "rmse_all", "spec_err")


def _add(total: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> None:
    for k, v in sums.items():
        total[k] = total[k] + v.cpu() if k in total else v.cpu()


def evaluate_fraction(
    cfg: Config, model, stats: FieldStats, ds: FieldDataset, device: torch.device, k: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Metrics of one observed fraction over ``ds``, and the first batch's arrays for the example panel."""
    rc = cfg.reconstruction
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval.batch_size)
    one, mean, spread = {}, {}, {}
    nfe, shown, start = 0, None, time.perf_counter()
    with progress_bar(f"fraction {ds.fraction:g}", len(loader)) as advance, torch.no_grad():
        for batch in loader:
            x1, observed = batch["field"].to(device), batch["observed"].to(device)
            noise = sample_noise(batch["index"], k, tuple(x1.shape[1:]), rc.seed)
            samples, nfe = draw_samples(model, x1, observed, noise, rc.val_solver, rc.val_steps)
            truth, draws = denormalize(x1, stats), denormalize(samples, stats)
            _add(one, reconstruction_sums(draws[0], truth, observed, stats.data_range))
            _add(mean, reconstruction_sums(draws.mean(0), truth, observed, stats.data_range))
            if k > 1:
                _add(spread, sample_sums(draws, truth, observed))
            if shown is None:
                spread_of = draws[:, :4].std(0).cpu() if k > 1 else None
                shown = {
                    "truth": truth[:4].cpu(),
                    "observed": observed[:4].cpu(),
                    "sample": draws[0, :4].cpu(),
                    "mean": draws[:, :4].mean(0).cpu(),
                    "spread": spread_of,
                }
            advance()
    m1, mk = metrics_from_sums(one), metrics_from_sums(mean)
    row = {
        "fraction": ds.fraction,
        "fields": len(ds),
        "nfe_per_sample": nfe,
        "samples": k,
        **{f"{key}_sample": m1[key] for key in KEYS},
        **{f"{key}_mean": mk[key] for key in KEYS},
        "sample_vs_mean_db": mk["psnr"] - m1["psnr"],
        "seconds": round(time.perf_counter() - start, 2),
    }
    if spread:
        ms = metrics_from_sums({**spread, "fields": one["fields"]})
        row.update(coverage90=ms["coverage"], spread=ms["spread"])
    return row, shown


def run(
    cfg: Config,
    state: dict[str, Any],
    device: torch.device,
    out: Path,
    inputs: list[Path],
    masks: list[Path],
    dataset: Path | None,
) -> EvalResult:
    """Evaluate the reconstruction checkpoint ``state`` into the (new, empty) folder ``out``."""
    if inputs or masks:
        raise UsageError(
            "--input/--mask predict segmentation scenes; a reconstruction run is evaluated on the test "
            "fields of its dataset (or --dataset)"
        )
    model, stats = load_field_model(state, device)
    folder = Path(dataset or state["dataset"])
    rc, k = cfg.reconstruction, cfg.reconstruction.samples
    rows, panel = [], None
    for fraction in rc.eval_fractions:
        ds = FieldDataset(
            folder, "test", state.get("fold"), fraction=fraction, seed=rc.seed, stats_key=state.get("stats_key")
        )
        if ds.channels != state["in_channels"]:
            raise InputError(
                f"'{folder}' has {ds.channels}-channel fields, the model {state['in_channels']}; "
                "use fields with the training channels"
            )
        row, shown = evaluate_fraction(cfg, model, stats, ds, device, k)
        rows.append(row)
        panel = panel or shown
    metrics = {
        "task": "reconstruction",
        "protocol": {
            "split": "test",
            "dataset": str(folder),
            "fractions": list(rc.eval_fractions),
            "seed": rc.seed,
            "solver": rc.val_solver,
            "steps": rc.val_steps,
            "nfe_per_sample": rows[0]["nfe_per_sample"],
            "samples": k,
            "units": "data units (denormalised with the training statistics)",
            "psnr_max": stats.data_range,
            "psnr_max_is": "the training fields' value range (max - min)",
            "regions": "metrics on unobserved pixels; *_all on the whole field",
            "coverage90": "share of unobserved true values inside the K samples' central 90% interval",
        },
        "per_fraction": rows,
    }
    (out / "metrics.json").write_text(dumps(metrics))
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if panel is not None:
        _panel(out / "vis" / "examples.png", panel)
    return EvalResult(out, metrics, ["metrics.json", "metrics.csv", "vis/examples.png"])


def _panel(path: Path, shown: dict[str, Any]) -> None:
    """Rows of fields (channel 0): observed points, truth, one sample, mean of K, spread, |mean - truth|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = shown["truth"][:, 0].numpy()
    cols = [
        ("observed", np.where(shown["observed"][:, 0].numpy(), truth, np.nan)),
        ("truth", truth),
        ("one sample", shown["sample"][:, 0].numpy()),
        ("mean of K", shown["mean"][:, 0].numpy()),
    ]
    if shown["spread"] is not None:
        cols.append(("spread (std)", shown["spread"][:, 0].numpy()))
    cols.append(("|mean - truth|", np.abs(shown["mean"][:, 0].numpy() - truth)))
    lo, hi = float(truth.min()), float(truth.max())
    fig, axes = plt.subplots(len(truth), len(cols), figsize=(2 * len(cols), 2 * len(truth)), squeeze=False)
    for r in range(len(truth)):
        for c, (title, arr) in enumerate(cols):
            ax = axes[r][c]
            same = title not in ("spread (std)", "|mean - truth|")
            ax.imshow(arr[r], cmap="viridis", vmin=lo if same else None, vmax=hi if same else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
