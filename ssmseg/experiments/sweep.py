"""``ssmseg sweep-steps``: how a trained field model's reconstructions depend on the ODE solver and its step
count, beside classical baselines, on the same test fields, observed pixels and starting noise.

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

Outputs go into a new folder (``RUN/sweep``, ``sweep-2``, ..., created exclusively, or a new or empty
``--out``), built in a staging folder beside it and moved onto it when complete, with the ``.ssmseg.json``
marker of ``ssmseg.outputs`` (kind ``sweep``): nothing that existed is replaced or removed.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssmseg import __version__, outputs
from ssmseg.config import Config
from ssmseg.data.field_dataset import FieldDataset, load_field_manifest
from ssmseg.data.fields import FieldStats, denormalize, normalize
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.logging import dumps
from ssmseg.engine.runtime import setup_runtime, shutdown
from ssmseg.errors import InputError, UsageError
from ssmseg.eta import duration
from ssmseg.experiments.folders import run_folder_of
from ssmseg.progress import info, progress_bar
from ssmseg.tasks.reconstruction import baselines as bl
from ssmseg.tasks.reconstruction.life import require_sweepable
from ssmseg.tasks.reconstruction.metrics import metrics_from_sums, reconstruction_sums, sample_statistics, sample_sums
from ssmseg.tasks.reconstruction.sampling import draw_samples, load_field_model, sample_noise
from ssmseg.tasks.reconstruction.solvers import CountingVelocity

INTERVAL = 0.9  # central interval of the calibration figure
LOOSE_REFERENCE = 1e-3  # the reference tolerance when no dopri5 row asks for a tighter one
DOPRI5_NFE_GUESS = 60  # a dopri5 solve's calls in the progress total until the first one shows its pace
PROJECT_FROM_T = 0.05  # a dopri5 solve's calls are projected from its progress in t once t passes this
SOLVER_ERROR_SHARE = 0.1  # "the solver no longer matters": its error under this share of the error to the truth
FLAT_DB = 0.1  # PSNR changes smaller than this count as no change


# ``sweep-steps --full``: every solver at every step count (hours on CPU); the defaults are a small grid
FULL_GRID = {"solvers": ["euler", "midpoint", "heun", "rk4", "dopri5"], "steps": [1, 2, 4, 8, 16, 32, 50, 100, 200],
             "max_fields": 100}  # fmt: skip


@dataclass(frozen=True)
class Setting:
    solver: str
    steps: int | None  # None: dopri5, which picks its own steps

    @property
    def label(self) -> str:
        return self.solver if self.steps is None else f"{self.solver} {self.steps}"


@dataclass
class SweepResult:
    out: Path
    rows: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    conclusions: list[str]
    protocol: dict[str, Any]
    timing: dict[str, Any]


def settings_of(cfg: Config) -> list[Setting]:
    """The grid: each solver in config order; fixed-step ones at each distinct step count, ascending."""
    steps = sorted(set(cfg.sweep.steps))
    out: list[Setting] = []
    for solver in dict.fromkeys(cfg.sweep.solvers):
        out += [Setting("dopri5", None)] if solver == "dopri5" else [Setting(solver, s) for s in steps]
    return out


def reference_tolerance(sc: Any) -> tuple[float, float]:
    """(atol, rtol) of the dopri5 reference: as set, else the dopri5 row's when dopri5 is swept, else
    ``LOOSE_REFERENCE``."""
    fallback = (sc.atol, sc.rtol) if "dopri5" in sc.solvers else (LOOSE_REFERENCE, LOOSE_REFERENCE)
    return (fallback[0] if sc.reference_atol is None else sc.reference_atol,
            fallback[1] if sc.reference_rtol is None else sc.reference_rtol)  # fmt: skip


def adaptive(cfg: Config) -> list[str]:
    """The dopri5 solves whose model calls the solver decides as it runs: the reference, and the dopri5 row
    when it has its own tolerance."""
    sc = cfg.sweep
    shared_ref = (sc.atol, sc.rtol) == reference_tolerance(sc)
    return ["reference"] + (["dopri5"] if "dopri5" in sc.solvers and not shared_ref else [])


def planned_calls(cfg: Config, n_fields: int, dopri5_nfe: float = 0.0) -> int:
    """Model calls the sweep plans for ``n_fields`` fields, each of the K samples solved apart, per batch: the
    fixed-step settings exactly, and each adaptive dopri5 solve (``adaptive``) counted at ``dopri5_nfe`` calls
    (0: left out; the sweep measures it on the first solve and prints the total then)."""
    sc = cfg.sweep
    fixed = sum(stages(s.solver) * s.steps for s in settings_of(cfg) if s.steps is not None)
    per_sample = fixed + dopri5_nfe * len(adaptive(cfg))
    return round(per_sample * sc.samples * math.ceil(n_fields / sc.batch_size))


def plan_line(cfg: Config, n_fields: int) -> str:
    """What the sweep will run and cost, printed before it starts, with how to ask for more. The fixed-step
    settings' model calls are exact; dopri5's are known only as it runs, so they are measured on its first
    solve and the total printed then (``reference_line``)."""
    sc, grid = cfg.sweep, settings_of(cfg)
    fixed = sorted(set(sc.steps))
    tol = reference_tolerance(sc)[0]
    solves = sc.samples * math.ceil(n_fields / sc.batch_size)
    text = (f"sweep plan: {len(grid)} settings ({', '.join(dict.fromkeys(sc.solvers))}; steps "
            f"{', '.join(map(str, fixed))}) on {n_fields} fields x K = {sc.samples}: {planned_calls(cfg, n_fields):,} "
            f"model calls of {min(sc.batch_size, n_fields)} fields for the fixed-step settings, plus a dopri5 "
            f"reference (tolerance {tol:g}; {solves} solve{'s' if solves > 1 else ''})"
            + (" and the dopri5 row" if "dopri5" in adaptive(cfg) else "")
            + " whose model calls the adaptive solver decides as it runs: measured on its first solve, the total "
            "is printed then")  # fmt: skip
    if set(FULL_GRID["solvers"]) <= set(sc.solvers) and set(FULL_GRID["steps"]) <= set(fixed):
        return text + "; the full grid takes hours on CPU"
    return text + ("; more: --full (every solver at 1-200 steps on 100 fields: hours on CPU) or --set "
                   "sweep.solvers=[...] --set sweep.steps=[...] --set sweep.max_fields=N")  # fmt: skip


def reference_line(cfg: Config, n_fields: int, calls: int, seconds: float) -> str:
    """The plan completed once the first reference solve has measured what a dopri5 solve costs."""
    total = planned_calls(cfg, n_fields, calls)
    ref = planned_calls(cfg, n_fields, calls) - planned_calls(cfg, n_fields)
    per_call = seconds / max(calls, 1)
    return (f"dopri5 reference: {calls} model calls in its first solve ({seconds:.1f} s); the sweep plans about "
            f"{total:,} model calls ({ref:,} of them dopri5), about {duration(total * per_call)} of solving at "
            f"{1000 * per_call:.0f} ms per call")  # fmt: skip


def stages(solver: str) -> int:
    """Model calls per step of a fixed-step solver."""
    return {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[solver]


# ---------------------------------------------------------------------------------------------- inputs


def load_run(run: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of a reconstruction run (a run folder's best.pt, else latest.pt, or a checkpoint file)
    and its state; a missing checkpoint or a run of another task is a usage error (exit 2)."""
    run = Path(run)
    if run.is_dir():
        found = [p for p in (run / "checkpoints" / "best.pt", run / "checkpoints" / "latest.pt") if p.is_file()]
        if not found:
            raise UsageError(f"'{run}' has no checkpoint (checkpoints/best.pt or latest.pt); train it first, or give "
                             "a checkpoint file")  # fmt: skip
        path = found[0]
    elif run.is_file():
        path = run
    else:
        raise UsageError(f"'{run}' does not exist; give a reconstruction run folder or a checkpoint file")
    state = ckpt.load(path)
    require_sweepable(state, run)
    return path, state


@dataclass
class SweepFields:
    """The test fields: ``truth`` in data units, ``values`` normalised with the model's statistics."""

    truth: Tensor  # (N, C, H, W) float32
    values: Tensor  # (N, C, H, W) float32
    observed: Tensor  # (N, 1, H, W) bool
    indices: Tensor  # (N,) field indices in the dataset's manifest
    folder: Path
    available: int
    observed_fraction: float | tuple[float, float]
    data_range: float | None = None  # PSNR's MAX: the training range of the fields' own dataset (None: the model's)


def load_fields(
    cfg: Config, state: dict[str, Any], fields: Path | None, stats: FieldStats, invariant: bool = False
) -> SweepFields:
    """The first ``sweep.max_fields`` test fields with their fixed observed pixels (``reconstruction.seed``)."""
    own = fields is None
    folder = Path(state["dataset"]) if own else Path(fields)
    if own and not folder.is_dir():
        raise InputError(f"the run's dataset '{folder}' is gone; give the test fields with --fields DATASET")
    fraction = cfg.sweep.observed if cfg.sweep.observed is not None else cfg.reconstruction.observed
    key = state.get("stats_key") if own and state.get("stats_key") in load_field_manifest(folder)["stats"] else None
    ds = FieldDataset(folder, "test", state.get("fold") if own else None, fraction=fraction,
                      seed=cfg.reconstruction.seed, stats_key=key)  # fmt: skip
    want = int(state["in_channels"])
    if ds.channels != want:
        raise UsageError(f"the fields in '{folder}' have {ds.channels} channel(s) but the model takes {want}; give "
                         f"fields with {want} channel(s)")  # fmt: skip
    if min(ds.height, ds.width) < 6:
        raise UsageError(f"the fields in '{folder}' are {ds.height}x{ds.width}; SSIM needs at least 6x6 pixels")
    if not own:
        check_units(ds.stats, stats, folder, invariant)
    n = len(ds) if cfg.sweep.max_fields is None else min(len(ds), cfg.sweep.max_fields)
    items = [ds[i] for i in range(n)]
    truth = denormalize(torch.stack([it["field"] for it in items]), ds.stats)  # data units
    return SweepFields(truth, normalize(truth, stats).float(), torch.stack([it["observed"] for it in items]),
                      torch.stack([it["index"] for it in items]), folder, len(ds), fraction,
                      ds.stats.data_range)  # fmt: skip


def check_units(theirs: FieldStats, ours: FieldStats, folder: Path, invariant: bool) -> None:
    """Fields in other units than the model's training fields are normalised with the model's statistics; only
    a model in per-field units (``invariant``: its ``per_field_units`` attribute, as field_unet) is unaffected.
    Any other model gets a one-line error instead of silent nonsense."""
    if invariant:
        return
    for c, (m1, s1, m0, s0) in enumerate(zip(theirs.mean, theirs.std, ours.mean, ours.std, strict=True)):
        if abs(m1 - m0) > s0 or not 0.5 <= s1 / s0 <= 2:
            raise UsageError(f"the fields in '{folder}' are not in the model's units (channel {c}: mean {m1:.4g}, std "
                             f"{s1:.4g}; the model's training fields: mean {m0:.4g}, std {s0:.4g}) and this model "
                             "normalises with its training statistics; give fields in the training units, or train "
                             "field_unet, which works in per-field units")  # fmt: skip


def check_out(out: Path | None) -> None:
    """A given ``--out`` must be new or an empty folder, reachable (no file on the way); checked before any work."""
    if out is None:
        return
    out = Path(out)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise outputs.OutputError(f"'{out}' already holds {outputs.describe(out)}; sweep-steps writes only into a "
                                  "new or empty folder: choose another --out")  # fmt: skip
    outputs.claim(out, "sweep", option="--out")


def sweep_key(path: Path, state: dict[str, Any], cfg: Config, fields: Path | None) -> dict[str, Any]:
    """Everything that determines a sweep's outputs (its marker's inputs)."""
    return {"checkpoint": str(Path(path).resolve()), "epoch": state.get("epoch"),
            "fields": str(Path(fields).resolve()) if fields is not None else str(state.get("dataset")),
            "sweep": cfg.sweep.model_dump(mode="json"), "seed": cfg.reconstruction.seed,
            "observed": cfg.reconstruction.observed}  # fmt: skip


def reserve_output(out: Path | None, run_dir: Path, key: dict[str, Any], about: str) -> tuple[Path, bool]:
    """The (empty or marker-only) output folder and whether it was created here: ``--out`` when it is new or
    empty, else RUN/sweep, RUN/sweep-2, ... (the first name free, created exclusively and marked)."""
    if out is not None and Path(out).is_dir():
        check_out(out)
        return Path(out), False  # the user's empty folder: the staged output is renamed onto it
    dest = run_dir / "sweep" if out is None else Path(out)
    return outputs.create_folder(dest, "sweep", key, unique=out is None, about=about), True


# ---------------------------------------------------------------------------------------------- the sweep


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
        "solver": setting.solver, "steps": setting.steps, "nfe": int(nfe) if nfe == int(nfe) else round(nfe, 2),
        "seconds": acc.seconds, "seconds_per_field": acc.seconds / max(n_fields, 1),
        "psnr_sample": s["psnr"], "psnr_mean": m["psnr"], "ssim_sample": s["ssim"], "ssim_mean": m["ssim"],
        "rmse_sample": s["rmse"], "rmse_mean": m["rmse"],
        "psnr_all_sample": s["psnr_all"], "psnr_all_mean": m["psnr_all"], "ssim_all_sample": s["ssim_all"],
        "ssim_all_mean": m["ssim_all"], "rmse_all_sample": s["rmse_all"], "rmse_all_mean": m["rmse_all"],
        "coverage90": float(acc.calib["covered"]) / unobserved, "spread": float(acc.calib["spread"]) / unobserved,
        "spectrum_error": s["spec_err"], "spectrum_error_mean": m["spec_err"],
        "spectrum_error_high": s["spec_err_high"],
        "solver_error": math.sqrt(acc.solver_sq / max(acc.solver_count, 1.0)),
    }  # fmt: skip


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (metrics on small fields lose from threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_model_takes(model: nn.Module, fields: SweepFields, device: torch.device, name: str) -> None:
    x = fields.values[:1].to(device)
    mask = fields.observed[:1].to(device).to(x.dtype)
    try:
        with torch.no_grad():
            v = model(torch.zeros_like(x), torch.zeros(1, device=device), x * mask, mask)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise UsageError(f"model '{name}' cannot take {x.shape[1]}-channel {x.shape[2]}x{x.shape[3]} fields "
                         f"({str(exc).splitlines()[0][:160]}); give fields it was built for") from exc  # fmt: skip
    if v.shape != x.shape:
        raise UsageError(f"model '{name}' returns {tuple(v.shape)} for fields {tuple(x.shape)}; give fields it takes")


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

        def draw(values: Tensor, observed: Tensor, noise: Tensor, solver: str, steps: int, atol: float,
                 rtol: float, pace: str | None = None) -> Tensor:  # fmt: skip
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
                    samples = draw(values, observed, noise, s.solver, s.steps or 1, sc.atol, sc.rtol,
                                   "dopri5" if s.steps is None else None)  # fmt: skip
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
                    examples["settings"][s] = {"sample": samples_d[0, :n_ex].cpu(), "mean": st["mean"].cpu(),
                                               "std": st["std"].cpu()}  # fmt: skip
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
            rows.append({"name": name, "psnr": m["psnr"], "ssim": m["ssim"], "rmse": m["rmse"],
                         "psnr_all": m["psnr_all"], "ssim_all": m["ssim_all"], "rmse_all": m["rmse_all"],
                         "spectrum_error": m["spec_err"], "spectrum_error_high": m["spec_err_high"],
                         "seconds": seconds, "seconds_per_field": seconds / max(n, 1)})  # fmt: skip
            preds_ex[name] = pred[:n_ex].float()
    return rows, preds_ex


# ---------------------------------------------------------------------------------------------- conclusions


def expected_coverage(k: int, interval: float = INTERVAL, draws: int = 20000) -> float:
    """Coverage the metric gives for K exact samples of a Gaussian posterior (the truth is one more draw):
    the empirical interval of few samples is narrower than the true one, so this is below ``interval``."""
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(k, draws, generator=gen, dtype=torch.float64)
    t = torch.randn(draws, generator=gen, dtype=torch.float64)
    q = torch.quantile(s, torch.tensor([(1 - interval) / 2, (1 + interval) / 2], dtype=torch.float64), dim=0)
    return float(((t >= q[0]) & (t <= q[1])).double().mean())


def _label(r: dict[str, Any]) -> str:
    if r.get("steps") is None:
        return f"{r['solver']} ({r['nfe']} NFE)"
    return f"{r['solver']}, {r['steps']} step{'s' if r['steps'] != 1 else ''} ({r['nfe']} NFE)"


def _finite(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [r for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])]


def conclude(rows: list[dict[str, Any]], baselines: list[dict[str, Any]], k: int) -> list[str]:
    """Conclusions computed from the numbers only (no claim that the numbers do not carry)."""
    out: list[str] = []
    scored = _finite(rows, "psnr_mean")
    if not scored:
        return ["no setting produced a finite PSNR"]
    best = max(scored, key=lambda r: r["psnr_mean"])
    best_one = max(scored, key=lambda r: r["psnr_sample"])
    out.append(f"best setting: {_label(best)}, PSNR {best['psnr_mean']:.2f} dB for the mean of {k} samples "
               f"({best['psnr_sample']:.2f} dB for one); best for one sample: {_label(best_one)}, "
               f"{best_one['psnr_sample']:.2f} dB")  # fmt: skip
    for solver in dict.fromkeys(r["solver"] for r in scored if r.get("steps") is not None):
        mine = sorted((r for r in scored if r["solver"] == solver), key=lambda r: r["steps"])
        if len(mine) < 2:
            continue
        first, last = mine[0], mine[-1]
        d1, dk = last["psnr_sample"] - first["psnr_sample"], last["psnr_mean"] - first["psnr_mean"]
        line = (f"{solver}: more steps {_verdict(d1, dk, k)}: one sample {first['psnr_sample']:.2f} -> "
                f"{last['psnr_sample']:.2f} dB ({d1:+.2f}) from {first['steps']} to {last['steps']} steps, mean of {k} "
                f"{first['psnr_mean']:.2f} -> {last['psnr_mean']:.2f} dB ({dk:+.2f})")  # fmt: skip
        peak = max(mine, key=lambda r: r["psnr_sample"])
        if peak["psnr_sample"] > max(first["psnr_sample"], last["psnr_sample"]) + FLAT_DB:
            line += f"; one-sample PSNR peaks at {peak['steps']} steps ({peak['psnr_sample']:.2f} dB)"
        under = [r["solver_error"] <= SOLVER_ERROR_SHARE * r["rmse_sample"] for r in mine]
        settled = next((r for i, r in enumerate(mine) if all(under[i:])), None)  # and stays under
        if settled is not None:
            line += (f"; from {settled['steps']} step{'s' if settled['steps'] != 1 else ''} on, the solver error "
                     f"({settled['solver_error']:.3g}) is under "
                     f"{SOLVER_ERROR_SHARE:.0%} of the error to the truth ({settled['rmse_sample']:.3g})")  # fmt: skip
        else:
            line += (
                f"; even at {last['steps']} steps the solver error ({last['solver_error']:.3g}) is "
                f"{last['solver_error'] / max(last['rmse_sample'], 1e-30):.0%} of the error to the truth"
            )
        out.append(line)
    accurate = min(scored, key=lambda r: (r["solver_error"], -float(r["nfe"])))
    gaps = [r["psnr_mean"] - r["psnr_sample"] for r in scored]
    theory = 10 * math.log10(2 / (1 + 1 / k))
    out.append(f"sample-versus-mean gap: {accurate['psnr_mean'] - accurate['psnr_sample']:.2f} dB at the most accurate "
               f"solve ({_label(accurate)}), median {float(np.median(gaps)):.2f} dB over all settings; exact posterior "
               f"samples give {theory:.2f} dB for the mean of {k} (3.01 dB for the posterior mean)")  # fmt: skip
    one_step = next((r for r in scored if r["solver"] == "euler" and r.get("steps") == 1), None)
    if one_step is not None and one_step is not accurate:
        out.append(f"one Euler step (a posterior-mean estimate): {one_step['psnr_sample']:.2f} dB, against "
                   f"{accurate['psnr_mean']:.2f} dB for the mean of {k} accurate samples and "
                   f"{accurate['psnr_sample']:.2f} dB for one")  # fmt: skip
    if k > 1 and isinstance(accurate.get("coverage90"), float) and math.isfinite(accurate["coverage90"]):
        cov, want = accurate["coverage90"], expected_coverage(k)
        word = "too narrow" if cov < want - 0.05 else "too wide" if cov > want + 0.05 else "about right"
        out.append(f"calibration: {cov:.1%} of unobserved true values lie inside the {k} samples' central 90% interval "
                   f"({_label(accurate)}); exact samples of a Gaussian posterior give {want:.1%} at K = {k}: the "
                   f"spread is {word}")  # fmt: skip
    base = _finite(baselines, "psnr")
    if base:
        top = max(base, key=lambda b: b["psnr"])
        d, d1 = best["psnr_mean"] - top["psnr"], best_one["psnr_sample"] - top["psnr"]
        out.append(f"best baseline: {top['name']} {top['psnr']:.2f} dB; the best mean of {k} is {_against(d)}, "
                   f"the best single sample {_against(d1)}")  # fmt: skip
        low = min(base, key=lambda b: b["psnr"])
        if best["psnr_mean"] < low["psnr"] and best_one["psnr_sample"] < low["psnr"]:
            out.append(f"the model is below every baseline, {low['name']} included ({low['psnr']:.2f} dB): its best "
                       f"mean of {k} is {_against(best['psnr_mean'] - low['psnr'])}")  # fmt: skip
        else:
            mean_fill = next((b for b in base if b["name"] == "mean"), None)
            if mean_fill is not None and best["psnr_mean"] < mean_fill["psnr"]:
                out.append(f"the model's best mean of {k} is below filling with the mean ({mean_fill['psnr']:.2f} "
                           f"dB): {_against(best['psnr_mean'] - mean_fill['psnr'])}")  # fmt: skip
    return out


def _verdict(d1: float, dk: float, k: int) -> str:
    """What more steps did, judged on one sample and on the mean of K alike (FLAT_DB: no change)."""

    def word(d: float) -> str:
        return "helped" if d > FLAT_DB else "hurt" if d < -FLAT_DB else "changed little"

    w1, wk = word(d1), word(dk)
    return w1 if w1 == wk else f"{w1} one sample but {wk} the mean of {k}"


def _against(d: float) -> str:
    """A signed PSNR difference in words, one sign convention only."""
    return f"{abs(d):.2f} dB above it" if d > 0 else f"{abs(d):.2f} dB below it" if d < 0 else "level with it"


# ---------------------------------------------------------------------------------------------- outputs


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"ssmseg": __version__, "torch": str(torch.__version__), "numpy": np.__version__}
    for pkg in ("torchdiffeq", "scipy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


CSV_KEYS = ("kind", "name", "steps", "nfe", "seconds", "seconds_per_field", "psnr_sample", "psnr_mean", "ssim_sample",
            "ssim_mean", "rmse_sample", "rmse_mean", "psnr_all_sample", "psnr_all_mean", "ssim_all_sample",
            "ssim_all_mean", "rmse_all_sample", "rmse_all_mean", "coverage90", "spread", "spectrum_error",
            "spectrum_error_mean", "spectrum_error_high", "solver_error")  # fmt: skip


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


def sweep_steps(cfg: Config, run: Path, fields: Path | None = None, out: Path | None = None) -> SweepResult:
    """Run the sweep for ``run`` (a run folder or checkpoint) and write its folder; see the module docstring."""
    path, state = load_run(run)
    check_out(out)
    run_dir = run_folder_of(path)
    key, about = sweep_key(path, state, cfg, fields), f"ssmseg sweep-steps of {path}"
    rt = setup_runtime(cfg.runtime)
    try:
        model, stats = load_field_model(state, rt.device)
        test = load_fields(cfg, state, fields, stats, bool(getattr(model, "per_field_units", False)))
        _check_model_takes(model, test, rt.device, state["config"]["model"]["name"])
        info(plan_line(cfg, len(test.truth)))
        dest, created = reserve_output(out, run_dir, key, about)
        tmp = None
        try:
            tmp = outputs.staging(dest)
            result = _run(cfg, state, path, run_dir, model, stats, test, rt.device, tmp)
            result.out = outputs.publish(tmp, dest, "sweep", key, about=about)  # onto the folder reserved above
        except BaseException:
            outputs.discard(tmp)
            if created:
                outputs.remove_own(dest, "sweep", option="--out")
            raise
        return result
    finally:
        shutdown(rt)


def _run(
    cfg: Config, state: dict[str, Any], path: Path, run_dir: Path, model: nn.Module, stats: FieldStats,
    test: SweepFields, device: torch.device, tmp: Path,
) -> SweepResult:  # fmt: skip
    from ssmseg.tasks.reconstruction import figures

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
        "run": str(run_dir), "checkpoint": str(path), "model": state["config"]["model"]["name"],
        "epoch": None if state.get("epoch") is None else state["epoch"] + 1,
        "epoch_numbering": "1-based, as in history.json", "dataset": str(test.folder),
        "own_dataset": test.folder == Path(state["dataset"]),
        "split": "test", "fold": state.get("fold"), "fields": len(test.truth),
        "fields_available": test.available, "field_indices": test.indices.tolist(),
        "field_size": list(test.truth.shape[2:]), "channels": int(test.truth.shape[1]),
        "fractions": list(frac) if isinstance(frac, tuple) else [frac],
        "fraction_mode": "range per field" if isinstance(frac, tuple) else "fixed", "seed": cfg.reconstruction.seed,
        "samples": k, "interval": INTERVAL, "solvers": list(dict.fromkeys(sc.solvers)),
        "steps": sorted(set(sc.steps)), "atol": sc.atol, "rtol": sc.rtol,
        "reference": {"solver": "dopri5", "atol": reference_tolerance(sc)[0], "rtol": reference_tolerance(sc)[1],
                      "nfe": timing["reference_nfe"]},
        "time_grid": "linspace(0, 1, steps + 1) in float64, ending exactly at 1",
        "baselines": list(dict.fromkeys(sc.baselines)), "data_range": data_range,
        "units": "data units of the fields; PSNR MAX = data_range, the value range of the training part of the "
                 "fields' own dataset (for the run's own dataset: the model's training fields)",
        "batch_size": sc.batch_size, "device": str(device), "torch_threads": torch.get_num_threads(),
        "baseline_threads": 1, "versions": _versions(),
    }  # fmt: skip
    timing["total_seconds"] = time.perf_counter() - t_start
    figures.sweep_plot(tmp / "psnr_vs_nfe.png", rows, base_rows, k)
    if examples["settings"]:
        figures.examples_panel(tmp / "examples.png", rows, base_rows, examples, base_ex, k)
    write_csv(tmp / "sweep.csv", rows, base_rows)
    data = {"format_version": 1, "kind": "sweep", "protocol": protocol, "rows": rows, "baselines": base_rows,
            "conclusions": conclusions, "timing": timing,
            "files": sorted(["sweep.json", *(p.name for p in tmp.iterdir())])}  # fmt: skip
    (tmp / "sweep.json").write_text(dumps(data), encoding="utf-8")
    return SweepResult(tmp, rows, base_rows, conclusions, protocol, timing)
