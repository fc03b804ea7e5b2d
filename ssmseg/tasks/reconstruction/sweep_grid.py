"""``ssmseg sweep-steps``'s solves and scores: the dopri5 reference and every setting of the grid, batch by batch
from the same noises, with a progress bar that counts field evaluations (dopri5's included, at its measured
pace); and the classical baselines on the same fields and observed pixels."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssmseg.config import Config
from ssmseg.data.fields import FieldStats, denormalize
from ssmseg.progress import info, progress_bar
from ssmseg.tasks.reconstruction import baselines as bl
from ssmseg.tasks.reconstruction.metrics import metrics_from_sums, reconstruction_sums, sample_statistics, sample_sums
from ssmseg.tasks.reconstruction.sampling import draw_samples, sample_noise
from ssmseg.tasks.reconstruction.solvers import CountingVelocity
from ssmseg.tasks.reconstruction.sweep_fields import SweepFields
from ssmseg.tasks.reconstruction.sweep_plan import (
    INTERVAL,
    Setting,
    adaptive,
    reference_line,
    reference_tolerance,
    settings_of,
    stages,
)

DOPRI5_NFE_GUESS = 60  # a dopri5 solve's calls in the progress total until the first one shows its pace
PROJECT_FROM_T = 0.05  # a dopri5 solve's calls are projected from its progress in t once t passes this


def _add(acc: dict[str, Tensor], sums: dict[str, Tensor]) -> None:
    for k, v in sums.items():
        acc[k] = acc[k] + v.detach().double().cpu() if k in acc else v.detach().double().cpu()


@dataclass
class _Acc:
    """Additive statistics of one setting over the batches."""

    sample: dict[str, Tensor] = field(default_factory=dict)
    mean: dict[str, Tensor] = field(default_factory=dict)
    calib: dict[str, Tensor] = field(default_factory=dict)
    solver_sq: float = 0.0
    solver_count: float = 0.0
    seconds: float = 0.0
    calls: int = 0
    solves: int = 0


def _score(acc: _Acc, samples: Tensor, ref: Tensor, truth: Tensor, observed: Tensor, data_range: float) -> None:
    """Accumulate the metrics of K samples (K, B, C, H, W) of a batch, all in data units."""
    k = samples.shape[0]
    obs_k = observed.expand(k, *observed.shape).flatten(0, 1)
    _add(acc.sample, reconstruction_sums(samples.flatten(0, 1), truth.repeat(k, 1, 1, 1), obs_k, data_range))
    _add(acc.mean, reconstruction_sums(samples.mean(0), truth, observed, data_range))
    _add(acc.calib, sample_sums(samples, truth, observed, INTERVAL))
    unobserved = (~observed).to(samples.dtype)
    acc.solver_sq += float((((samples - ref) ** 2) * unobserved).double().sum())
    acc.solver_count += float(unobserved.sum()) * k * samples.shape[2]


def _row(setting: Setting, acc: _Acc, n_fields: int) -> dict[str, Any]:
    s, m = metrics_from_sums(acc.sample), metrics_from_sums(acc.mean)
    unobserved = max(float(acc.calib["coverage_count"]), 1.0)
    nfe = acc.calls / max(acc.solves, 1)
    return {
        "solver": setting.solver,
        "steps": setting.steps,
        "nfe": int(nfe) if nfe == int(nfe) else round(nfe, 2),
        "seconds": acc.seconds,
        "seconds_per_field": acc.seconds / max(n_fields, 1),
        "psnr_sample": s["psnr"],
        "psnr_mean": m["psnr"],
        "ssim_sample": s["ssim"],
        "ssim_mean": m["ssim"],
        "rmse_sample": s["rmse"],
        "rmse_mean": m["rmse"],
        "psnr_all_sample": s["psnr_all"],
        "psnr_all_mean": m["psnr_all"],
        "ssim_all_sample": s["ssim_all"],
        "ssim_all_mean": m["ssim_all"],
        "rmse_all_sample": s["rmse_all"],
        "rmse_all_mean": m["rmse_all"],
        "coverage90": float(acc.calib["covered"]) / unobserved,
        "spread": float(acc.calib["spread"]) / unobserved,
        "spectrum_error": s["spec_err"],
        "spectrum_error_mean": m["spec_err"],
        "spectrum_error_high": s["spec_err_high"],
        "solver_error": math.sqrt(acc.solver_sq / max(acc.solver_count, 1.0)),
    }


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (metrics on small fields lose from threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Pace:
    """The model calls of dopri5 solves, known only as they run: the calls of a solve still to come are estimated
    from the finished solves and from how far in t the current one has got (``PROJECT_FROM_T``)."""

    guess: float  # calls of one solve before any is measured
    calls: int = 0  # calls of the finished solves
    solves: int = 0
    current: int = 0  # calls of the solve under way
    t: float = 0.0  # how far in t it has got

    def per_solve(self) -> float:
        mean = self.calls / self.solves if self.solves else self.guess
        if not self.current:
            return mean
        now = self.current / self.t if self.t >= PROJECT_FROM_T else mean
        return (self.calls + max(now, self.current)) / (self.solves + 1)


class _Watch:
    """The model as the solvers call it: counts every call (``counting``), advances the bar by the fields each
    call evaluates, and inside a dopri5 solve keeps its ``_Pace`` and the bar's total up to date."""

    def __init__(self, counting: CountingVelocity, advance: Any, fixed_total: int, field_solves: int) -> None:
        self.counting, self.advance = counting, advance
        self.fixed_total, self.field_solves = fixed_total, field_solves
        self.paces: dict[str, _Pace] = {}
        self.pace: _Pace | None = None  # the dopri5 solve under way, if any
        self.done = 0

    def __call__(self, x: Tensor, t: Tensor, *rest: Tensor) -> Tensor:
        out = self.counting(x, t, *rest)
        self.done += int(x.shape[0])
        self.advance(int(x.shape[0]))
        if self.pace is not None:
            self.pace.current += 1
            self.pace.t = max(self.pace.t, float(t.reshape(-1)[0]))
            self.retotal()
        return out

    def retotal(self) -> None:
        """Fields evaluated in all: the fixed-step settings exactly, each dopri5 kind at its estimated pace."""
        adaptive = sum(p.per_solve() for p in self.paces.values()) * self.field_solves
        self.advance.set_total(max(self.done, round(self.fixed_total + adaptive)))


def run_grid(
    cfg: Config, model: nn.Module, fields: SweepFields, stats: FieldStats, device: torch.device
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Reference and every setting, batch by batch; returns rows, example tensors and timings. The bar counts
    fields evaluated by the model (calls x batch size) and advances on every call, dopri5's included."""
    sc, k = cfg.sweep, cfg.sweep.samples
    grid = settings_of(cfg)
    counting = CountingVelocity(model)  # counts every model call (NFE), whatever the solver
    data_range = stats.data_range if fields.data_range is None else fields.data_range
    n, (c, h, w) = len(fields.truth), fields.truth.shape[1:]
    accs = {s: _Acc() for s in grid}
    ref_atol, ref_rtol = reference_tolerance(sc)
    shared_ref = (sc.atol, sc.rtol) == (ref_atol, ref_rtol)  # dopri5's row is the reference
    ref_acc = _Acc()
    n_ex = min(sc.examples, n)
    examples: dict[str, Any] = {"settings": {}, "truth": fields.truth[:n_ex], "observed": fields.observed[:n_ex]}
    timing: dict[str, Any] = {"reference_seconds": 0.0, "solve_seconds": 0.0, "metrics_seconds": 0.0}
    fixed_total = sum(stages(s.solver) * s.steps for s in grid if s.steps is not None) * n * k
    guess = fixed_total + DOPRI5_NFE_GUESS * len(adaptive(cfg)) * n * k
    with progress_bar("sweep (field evaluations)", guess) as advance, torch.no_grad():
        watch = _Watch(counting, advance, fixed_total, n * k)
        watch.paces = {name: _Pace(DOPRI5_NFE_GUESS) for name in adaptive(cfg)}

        def draw(
            values: Tensor,
            observed: Tensor,
            noise: Tensor,
            solver: str,
            steps: int,
            atol: float,
            rtol: float,
            pace: str | None = None,
        ) -> Tensor:
            """K samples (K, B, C, H, W), one solve per noise; a dopri5 solve keeps its pace."""
            out = []
            for x0 in noise.split(1):
                watch.pace = watch.paces.get(pace) if pace else None
                t0 = time.perf_counter()
                out.append(draw_samples(watch, values, observed, x0, solver, steps, atol, rtol)[0])
                p, watch.pace = watch.pace, None
                if p is not None:
                    p.calls, p.solves, p.current, p.t = p.calls + p.current, p.solves + 1, 0, 0.0
                    watch.retotal()
                    if pace == "reference" and p.solves == 1:
                        info(reference_line(cfg, n, p.calls, time.perf_counter() - t0))
            return torch.cat(out)

        for start in range(0, n, sc.batch_size):
            sl = slice(start, min(start + sc.batch_size, n))
            values, observed = fields.values[sl].to(device), fields.observed[sl].to(device)
            truth = fields.truth[sl].to(device)
            noise = sample_noise(fields.indices[sl], k, (c, h, w), cfg.reconstruction.seed)
            t0, calls0 = time.perf_counter(), counting.nfe
            ref = draw(values, observed, noise, "dopri5", 1, ref_atol, ref_rtol, "reference")
            ref_acc.seconds += time.perf_counter() - t0
            ref_acc.calls += counting.nfe - calls0
            ref_acc.solves += k
            ref_d = denormalize(ref, stats)
            for s in grid:
                acc = accs[s]
                if s.steps is None and shared_ref:
                    samples_d = ref_d
                    acc.seconds, acc.calls, acc.solves = ref_acc.seconds, ref_acc.calls, ref_acc.solves
                else:
                    t0, calls0 = time.perf_counter(), counting.nfe
                    samples = draw(
                        values,
                        observed,
                        noise,
                        s.solver,
                        s.steps or 1,
                        sc.atol,
                        sc.rtol,
                        "dopri5" if s.steps is None else None,
                    )
                    acc.seconds += time.perf_counter() - t0
                    timing["solve_seconds"] += time.perf_counter() - t0
                    acc.calls += counting.nfe - calls0
                    acc.solves += k
                    samples_d = denormalize(samples, stats)
                t0 = time.perf_counter()
                with torch_threads(1) if device.type == "cpu" else nullcontext():
                    _score(acc, samples_d, ref_d, truth, observed, data_range)
                timing["metrics_seconds"] += time.perf_counter() - t0
                if start == 0 and n_ex:
                    st = sample_statistics(samples_d[:, :n_ex], truth[:n_ex], observed[:n_ex], INTERVAL)
                    examples["settings"][s] = {
                        "sample": samples_d[0, :n_ex].cpu(),
                        "mean": st["mean"].cpu(),
                        "std": st["std"].cpu(),
                    }
    timing["reference_seconds"] = ref_acc.seconds
    timing["reference_nfe"] = ref_acc.calls / max(ref_acc.solves, 1)
    timing["model_calls"] = counting.nfe
    timing["model_fields"] = counting.fields
    rows = [_row(s, accs[s], n) for s in grid]
    return rows, examples, timing


def run_baselines(cfg: Config, fields: SweepFields, data_range: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each baseline on every field (data units, BLAS on one thread); rows and the examples' predictions."""
    from threadpoolctl import threadpool_limits

    names = list(dict.fromkeys(cfg.sweep.baselines))
    n = len(fields.truth)
    truth, observed = fields.truth.double(), fields.observed
    n_ex = min(cfg.sweep.examples, n)
    rows, preds_ex = [], {}
    with progress_bar("baselines", n * len(names)) as advance, threadpool_limits(limits=1), torch_threads(1):
        for name in names:
            preds, t0 = [], time.perf_counter()
            for i in range(n):
                preds.append(bl.predict(name, truth[i].numpy(), observed[i, 0].numpy()))
                advance()
            seconds = time.perf_counter() - t0
            pred = torch.from_numpy(np.stack(preds))
            m = metrics_from_sums(reconstruction_sums(pred, truth, observed, data_range))
            rows.append(
                {
                    "name": name,
                    "psnr": m["psnr"],
                    "ssim": m["ssim"],
                    "rmse": m["rmse"],
                    "psnr_all": m["psnr_all"],
                    "ssim_all": m["ssim_all"],
                    "rmse_all": m["rmse_all"],
                    "spectrum_error": m["spec_err"],
                    "spectrum_error_high": m["spec_err_high"],
                    "seconds": seconds,
                    "seconds_per_field": seconds / max(n, 1),
                }
            )
            preds_ex[name] = pred[:n_ex].float()
    return rows, preds_ex
