"""cv's final table read at 100 columns (COLUMNS=100), for both tasks: no truncated name, no wrapped value."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ssmseg.cli.train_cmd import cv_table

SEG = ["heldout/miou", "heldout/oa", "heldout/mean_f1", "heldout/kappa", "val/miou", "val/loss", "val/oa"]
REC = [
    "val/psnr",
    "val/loss",
    "val/rmse",
    "val/ssim",
    "val/psnr_all",
    "val/spec_err",
    "val/psnr_solve",
    "val/rmse_solve",
    "val/ssim_solve",
]


def summary(metrics: list[str], monitor: str, folds: int) -> dict:
    rows = [{"fold": k, "best_epoch": 10 + k, **{m: -12.3456 + 0.01 * k for m in metrics}} for k in range(folds)]
    return {
        "folds": rows,
        "monitor": monitor,
        "metrics": metrics,
        "mean": dict.fromkeys(metrics, -12.3356),
        "std": dict.fromkeys(metrics, 0.0123),
    }


def render(s: dict, width: int = 100) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    heading, table = cv_table(s, width)
    console.print(heading)
    console.print(table)
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("metrics", "monitor", "shown"),
    [
        (SEG, "val/miou", [*SEG[:4], "val/miou"]),  # segmentation: held-out scores, then the monitored metric
        (REC, "val/psnr", REC),  # reconstruction: every validation metric
    ],
)
@pytest.mark.parametrize("folds", [3, 5])
def test_cv_table_reads_at_100_columns(metrics, monitor, shown, folds):
    lines = render(summary(metrics, monitor, folds))
    assert all(len(line) <= 100 for line in lines) and "…" not in "\n".join(lines)
    for m in shown:  # each metric whole on one line, with every fold and its mean and std
        line = next(ln for ln in lines if f"│ {m} " in ln)
        assert line.count("-12.3") == folds + 1 and "0.0123" in line, line
    assert sum(ln.startswith("│ best epoch") for ln in lines) == 1 and all(
        f"fold_{k}" in "\n".join(lines) for k in range(folds)
    )


def test_folds_that_do_not_fit_leave_the_mean_and_std():
    lines = render(summary(REC, "val/psnr", 10))
    text = "\n".join(lines)
    assert all(len(line) <= 100 for line in lines) and "…" not in text
    assert "fold_3" not in text and "cv_summary.csv" in text
    assert all(next(ln for ln in lines if f"│ {m} " in ln).count("-12.3356") == 1 for m in REC)
