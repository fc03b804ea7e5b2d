"""Reconstruction's ``ssmseg sweep-steps`` (``ReconstructionLife.step_sweep``): how a trained field model's
reconstructions depend on the ODE solver and its step count, beside classical baselines, on the same test
fields, observed pixels and starting noise.

Settings: every fixed-step solver of ``sweep.solvers`` at every count of ``sweep.steps``, and dopri5 once
(``sweep.atol``/``sweep.rtol``). Each draws K samples per field from the K noises of ``sample_noise``, so
every setting starts from the same noise. Per setting, on unobserved pixels and on the whole field, in the
data's units (PSNR's MAX: the value range of the training part of the fields' dataset, which for the run's
own dataset is the model's training fields). Fields of another dataset (``--fields``) in other units than the
model's training fields are refused unless the model works in per-field units (field_unet):

    *_sample      the metric of one sample (averaged over the K samples: each sample counts as one try)
    *_mean        the metric of the mean of the K samples
    coverage90    share of unobserved true values inside the samples' central 90% interval
    spread        mean per-pixel standard deviation of the samples (unobserved pixels)
    spectrum_error / _mean / _high   relative error of the radially averaged power spectrum (sample: all
                  frequencies, mean of K, sample: upper half of the band); added wiggles show here
    solver_error  RMS distance of the solves to a dopri5 reference solve of the same noises
                  (``sweep.reference_atol``/``reference_rtol``): the solver's error apart from the model's
    nfe           model calls per solve, counted by wrapping the model (never inferred from the steps)
    seconds       wall seconds of the solves (all fields, all K samples)

The batch-outer loop keeps only one batch of samples in memory. dopri5 controls its error over a batch of
``sweep.batch_size`` fields at once. Baselines (``tasks/reconstruction/baselines.py``) run on the
data-unit fields with BLAS limited to one thread, and the metrics run on one torch thread (their many
small operations only lose from threads on a shared CPU); the model runs on ``runtime.threads``.

This module loads and checks what a sweep needs (``FieldSweep.prepare``) and writes a complete sweep into the
staging folder it is given (``PreparedSweep.run``); ``experiments/sweep.py`` owns the folders (which one, its
marker, publishing it whole or not at all). The grid and plan are in ``sweep_plan.py``, the test fields in
``sweep_fields.py``, the solves and scores in ``sweep_grid.py``, the conclusions in ``sweep_conclusions.py``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssmseg import __version__
from ssmseg.config import Config
from ssmseg.data.fields import FieldStats
from ssmseg.engine.logging import dumps
from ssmseg.progress import info
from ssmseg.tasks.reconstruction.sampling import load_field_model
from ssmseg.tasks.reconstruction.sweep_conclusions import conclude
from ssmseg.tasks.reconstruction.sweep_fields import SweepFields, check_model_takes, load_fields
from ssmseg.tasks.reconstruction.sweep_grid import run_baselines, run_grid
from ssmseg.tasks.reconstruction.sweep_plan import FULL_GRID, INTERVAL, plan_line, reference_tolerance
from ssmseg.tasks.results import SweepResult


class FieldSweep:
    """What ``ssmseg sweep-steps`` asks of the reconstruction task."""

    full_grid = FULL_GRID

    def prepare(self, cfg: Config, state: dict[str, Any], fields: Path | None, device: torch.device) -> PreparedSweep:
        """The model and test fields of a run's checkpoint state, checked (before any output folder exists), and
        the plan printed."""
        model, stats = load_field_model(state, device)
        test = load_fields(cfg, state, fields, stats, bool(getattr(model, "per_field_units", False)))
        check_model_takes(model, test, device, state["config"]["model"]["name"])
        info(plan_line(cfg, len(test.truth)))
        return PreparedSweep(cfg, state, model, stats, test, device)


@dataclass
class PreparedSweep:
    cfg: Config
    state: dict[str, Any]
    model: nn.Module
    stats: FieldStats
    test: SweepFields
    device: torch.device

    def run(self, checkpoint: Path, run_dir: Path, tmp: Path) -> SweepResult:
        """Solve, score and conclude; write sweep.json, sweep.csv and the figures into ``tmp``."""
        from ssmseg.tasks.reconstruction import figures

        cfg, state, model, stats, test, device = self.cfg, self.state, self.model, self.stats, self.test, self.device
        t_start = time.perf_counter()
        sc, k = cfg.sweep, cfg.sweep.samples
        rows, examples, timing = run_grid(cfg, model, test, stats, device)
        t0 = time.perf_counter()
        data_range = stats.data_range if test.data_range is None else test.data_range
        base_rows, base_ex = run_baselines(cfg, test, data_range) if sc.baselines else ([], {})
        timing["baseline_seconds"] = time.perf_counter() - t0
        conclusions = conclude(rows, base_rows, k)
        frac = test.observed_fraction
        protocol = {
            "run": str(run_dir),
            "checkpoint": str(checkpoint),
            "model": state["config"]["model"]["name"],
            "epoch": None if state.get("epoch") is None else state["epoch"] + 1,
            "epoch_numbering": "1-based, as in history.json",
            "dataset": str(test.folder),
            "own_dataset": test.folder == Path(state["dataset"]),
            "split": "test",
            "fold": state.get("fold"),
            "fields": len(test.truth),
            "fields_available": test.available,
            "field_indices": test.indices.tolist(),
            "field_size": list(test.truth.shape[2:]),
            "channels": int(test.truth.shape[1]),
            "fractions": list(frac) if isinstance(frac, tuple) else [frac],
            "fraction_mode": "range per field" if isinstance(frac, tuple) else "fixed",
            "seed": cfg.reconstruction.seed,
            "samples": k,
            "interval": INTERVAL,
            "solvers": list(dict.fromkeys(sc.solvers)),
            "steps": sorted(set(sc.steps)),
            "atol": sc.atol,
            "rtol": sc.rtol,
            "reference": {
                "solver": "dopri5",
                "atol": reference_tolerance(sc)[0],
                "rtol": reference_tolerance(sc)[1],
                "nfe": timing["reference_nfe"],
            },
            "time_grid": "linspace(0, 1, steps + 1) in float64, ending exactly at 1",
            "baselines": list(dict.fromkeys(sc.baselines)),
            "data_range": data_range,
            "units": "data units of the fields; PSNR MAX = data_range, the value range of the training part of the "
            "fields' own dataset (for the run's own dataset: the model's training fields)",
            "batch_size": sc.batch_size,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "baseline_threads": 1,
            "versions": _versions(),
        }
        timing["total_seconds"] = time.perf_counter() - t_start
        figures.sweep_plot(tmp / "psnr_vs_nfe.png", rows, base_rows, k)
        if examples["settings"]:
            figures.examples_panel(tmp / "examples.png", rows, base_rows, examples, base_ex, k)
        write_csv(tmp / "sweep.csv", rows, base_rows)
        data = {
            "format_version": 1,
            "kind": "sweep",
            "protocol": protocol,
            "rows": rows,
            "baselines": base_rows,
            "conclusions": conclusions,
            "timing": timing,
            "files": sorted(["sweep.json", *(p.name for p in tmp.iterdir())]),
        }
        (tmp / "sweep.json").write_text(dumps(data), encoding="utf-8")
        return SweepResult(tmp, rows, base_rows, conclusions, protocol, timing)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"ssmseg": __version__, "torch": str(torch.__version__), "numpy": np.__version__}
    for pkg in ("torchdiffeq", "scipy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


CSV_KEYS = (
    "kind",
    "name",
    "steps",
    "nfe",
    "seconds",
    "seconds_per_field",
    "psnr_sample",
    "psnr_mean",
    "ssim_sample",
    "ssim_mean",
    "rmse_sample",
    "rmse_mean",
    "psnr_all_sample",
    "psnr_all_mean",
    "ssim_all_sample",
    "ssim_all_mean",
    "rmse_all_sample",
    "rmse_all_mean",
    "coverage90",
    "spread",
    "spectrum_error",
    "spectrum_error_mean",
    "spectrum_error_high",
    "solver_error",
)


def write_csv(path: Path, rows: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> None:
    """One line per setting and per baseline; a baseline's one prediction fills both its sample and mean columns."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, CSV_KEYS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({"kind": "solver", "name": r["solver"], **r})
        for b in baselines:
            line = {"kind": "baseline", **b}
            for key in ("psnr", "ssim", "rmse", "psnr_all", "ssim_all", "rmse_all"):
                line[f"{key}_sample"] = line[f"{key}_mean"] = b[key]
            line["spectrum_error_mean"] = b["spectrum_error"]
            writer.writerow(line)
