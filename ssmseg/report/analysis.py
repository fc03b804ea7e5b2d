"""Headline numbers, training stages, findings and comparisons, from what ``runs.py`` read.

Every sentence the report prints is made here by a named rule, from the data, with the evidence that
triggered it (``Finding.evidence``) and the thresholds in ``THRESHOLDS``. The rules are direction-aware:
internally a run's monitored metric is turned into a score that goes up (``sign`` = -1 for ``mode: min``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ssmseg.report.runs import CV, Eval, Run, Sweep, cfg_get, number

THRESHOLDS = {
    "fast_learning_share": 0.75,  # fast learning ends when this share of the start-to-peak gain is reached
    "peak_band": 0.05,  # the peak: epochs around the best within this share of the gain of the smoothed top
    "still_improving_gain": 0.03,  # last-quarter gain, as a share of the whole gain, that counts as improving
    "still_improving_t": 3.0,  # and the t statistic of its slope
    "degradation_drop": 0.05,  # drop from the smoothed best to the final epochs, share of the gain
    "overfit_gap_rise": 0.05,  # rise of the gap after the best epoch, share of the gain
    "noise_factor": 3.0,  # changes smaller than this many noise standard deviations are ignored
    "lr_small_fraction": 0.1,  # the LR counts as decayed below this fraction of its peak
    "lr_early_share": 0.75,  # ... too early if less than this share of the gain had been made by then
    "low_metric": 0.5,  # bounded [0, 1] metrics: train and validation both at or below this are low
    "close_gap": 0.05,  # ... and close when |train - validation| is at most this
    "blowup_factor": 3.0,  # train loss ending this many times above its minimum (and above its start)
    "grad_spike_factor": 10.0,  # an epoch's largest gradient norm this many times the median epoch mean
    "chance_margin": 0.01,  # a metric within this of its chance baseline counts as at chance
    "cv_spread": 0.10,  # fold std above this share of |mean|
    "weak_class_share": 0.5,  # a class IoU below this share of the mIoU
    "posterior_gap_db": 3.5,  # a sample-versus-mean PSNR gap above this (3.01 dB for exact posterior samples)
    "psnr_drop_db": 0.1,  # PSNR falling by more than this from the fewest to the most function evaluations
}
_T = THRESHOLDS
RULES = [  # name, when it fires (shown in the report's rule table and report.json)
    (
        "divergence",
        "stop_reason is 'diverged'; train/loss, val/loss, the monitored metric or the LR turns NaN or "
        f"infinite; or train/loss ends {_T['blowup_factor']:g}x above its minimum and above its first value",
    ),
    (
        "still_improving",
        "a line fitted to the last quarter of the epochs (at least 5) gains more than "
        f"{_T['still_improving_gain']:.0%} of the run's whole gain with t > {_T['still_improving_t']:g}, and the best "
        "epoch lies in that window",
    ),
    (
        "degradation_after_best",
        "3 or more epochs after the best, the mean of the last 5 is worse than the smoothed "
        f"best by more than {_T['degradation_drop']:.0%} of the gain and {_T['noise_factor']:g} noise SDs",
    ),
    (
        "overfitting",
        f"after the best epoch the train-validation gap rises by more than {_T['overfit_gap_rise']:.0%} of "
        f"the gain and {_T['noise_factor']:g} noise SDs while the training metric still improves; the onset is the "
        "peak of the smoothed validation metric",
    ),
    (
        "lr_decayed_early",
        f"the LR falls to {_T['lr_small_fraction']:.0%} of its peak or less while the smoothed "
        f"validation metric has made less than {_T['lr_early_share']:.0%} of its gain, and it then gains more than "
        f"{1 - _T['lr_early_share']:.0%} of the gain (and {_T['noise_factor']:g} noise SDs) at that small LR",
    ),
    (
        "low_and_close",
        f"a [0, 1] metric monitored with mode max: train and validation over the last quarter both at "
        f"most {_T['low_metric']:g}, within {_T['close_gap']:g} of each other, and the training metric flat",
    ),
    (
        "grad_norm_spikes",
        f"an epoch's grad_norm_max exceeds {_T['grad_spike_factor']:g}x the median epoch-mean "
        "gradient norm (non-finite norms are the divergence rule's)",
    ),
    (
        "at_chance",
        f"the best monitored value (or an eval metric) is at most {_T['chance_margin']:g} above the better "
        "of its majority-class and class-prior chance baselines, computed for that same metric",
    ),
    ("cv_spread", f"a metric's standard deviation across folds is more than {_T['cv_spread']:.0%} of |mean|"),
    ("weak_classes", f"a class's IoU is below {_T['weak_class_share']:.0%} of the mIoU"),
    (
        "sample_mean_gap",
        f"the median PSNR gap of the sample mean over one sample is above {_T['posterior_gap_db']:g} dB or below 0",
    ),
    ("below_baseline", "the best solver setting's PSNR is not above the best baseline's"),
    (
        "psnr_falls_with_steps",
        f"a solver's PSNR falls by more than {_T['psnr_drop_db']:g} dB from its fewest to its "
        "most function evaluations",
    ),
]
BOUNDED_01 = ("oa", "miou", "mean_f1", "kappa", "ssim", "f1", "accuracy", "dice", "iou")
CHANCE_METRICS = ("oa", "miou", "mean_f1", "kappa")
STAGE_RULES = {
    "warmup": "epochs 1 to schedule.warmup_epochs (linear LR warmup)",
    "fast learning": "after warmup until the smoothed validation metric has made 75% of its gain to the peak",
    "steady climb": "from there until the peak stage",
    "peak": "contiguous epochs around the best whose smoothed metric is within 5% of the gain of its top",
    "late stage": "after the peak until the last epoch",
}


@dataclass
class Finding:
    rule: str
    severity: str  # warning | info
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a sentence: 4 significant digits, 'NaN'/'inf' spelled out, 'missing' for None."""
    if x is None:
        return "missing"
    if isinstance(x, bool) or not isinstance(x, int | float | np.floating | np.integer):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e7:
        return str(int(x))
    return f"{x:.{digits}g}"


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars and arrays plain Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# ---------------------------------------------------------------------------------------------- series helpers


def smooth_window(n: int) -> int:
    return 2 * max(1, n // 30) + 1


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean over the finite values in each window (NaN where a window has none)."""
    n, h = len(y), window // 2
    ok = np.isfinite(y)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cc = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(n)
    lo, hi = np.clip(idx - h, 0, n), np.clip(idx + h + 1, 0, n)
    count = cc[hi] - cc[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (cs[hi] - cs[lo]) / np.maximum(count, 1), np.nan)


def noise(y: np.ndarray) -> float:
    """Robust standard deviation of epoch-to-epoch noise (MAD of first differences / sqrt 2)."""
    d = np.diff(y[np.isfinite(y)])
    if len(d) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y against x and its t statistic (inf for a perfect line)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan, math.nan
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float((resid**2).sum()) / (len(x) - 2) / float((xc**2).sum()))
    return slope, (math.copysign(math.inf, slope) if se == 0 and slope != 0 else slope / se if se else 0.0)


def _mean(y: np.ndarray) -> float:
    y = y[np.isfinite(y)]
    return float(y.mean()) if len(y) else math.nan


def _at(y: np.ndarray | None, i: int | None) -> float:
    return float(y[i]) if y is not None and i is not None else math.nan


# ---------------------------------------------------------------------------------------------- chance baselines


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """OA, mIoU, mean F1 and kappa exactly as the evaluator computes them (macro over present classes)."""
    cm = np.asarray(cm, dtype=np.float64)
    total, tp = cm.sum(), np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (support + predicted - tp)
        f1 = 2 * tp / (support + predicted)
    oa = tp.sum() / total if total else 0.0
    expected = (support * predicted).sum() / total**2 if total else 0.0
    kappa = (oa - expected) / (1 - expected) if total and expected < 1 else 0.0
    return {
        "oa": float(oa),
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "mean_f1": float(f1[present].mean()) if present.any() else 0.0,
        "kappa": float(kappa),
    }


def chance_baselines(metric: str, run: Run) -> tuple[dict[str, Any] | None, str | None]:
    """The chance value of ``metric`` on the validation pixels: always the training majority class, and
    drawing each pixel's class from the training priors. (None, why) when it cannot be computed."""
    if metric not in CHANCE_METRICS:
        return None, f"no chance baseline for {metric}: computed only for {', '.join(CHANCE_METRICS)}"
    val = run.info.get("class_counts_val")
    train = run.info.get("class_counts_train")
    ok = lambda c: isinstance(c, list) and c and all(isinstance(v, int | float) and v >= 0 for v in c)  # noqa: E731
    if not ok(val):
        return None, f"no chance baseline for {metric}: history.json has no run.class_counts_val"
    support = np.asarray(val, np.float64)
    prior_src = "class_counts_train" if ok(train) and len(train) == len(val) and sum(train) > 0 else "class_counts_val"
    prior = np.asarray(run.info[prior_src], np.float64)
    if prior.sum() == 0:
        return None, f"no chance baseline for {metric}: the class counts are all zero"
    prior = prior / prior.sum()
    majority = np.zeros((len(support), len(support)))
    majority[:, int(prior.argmax())] = support
    classes = run.info.get("classes") if isinstance(run.info.get("classes"), list) else None
    name = str(classes[int(prior.argmax())]) if classes and len(classes) == len(support) else str(int(prior.argmax()))
    return {
        "metric": metric,
        "majority_class": {"class": name, "value": metrics_from_confusion(majority)[metric]},
        "class_prior_draw": {"value": metrics_from_confusion(np.outer(support, prior))[metric]},
        "pixels_from": "class_counts_val",
        "priors_from": prior_src,
    }, None


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Curves:
    """Per-epoch columns of one run as float arrays (NaN where absent)."""

    epoch: np.ndarray
    cols: dict[str, np.ndarray]

    @classmethod
    def of(cls, run: Run) -> Curves:
        keys = [k for k in dict.fromkeys(k for r in run.records for k in r) if k != "epoch"]
        cols = {k: np.array([number(r.get(k)) for r in run.records]) for k in keys}
        cols = {k: v for k, v in cols.items() if not np.isnan(v).all() or k in ("lr", run.monitor)}
        return cls(np.array([r["epoch"] for r in run.records], dtype=np.float64), cols)

    def get(self, key: str | None) -> np.ndarray | None:
        return self.cols.get(key) if key else None


def analyse_run(run: Run) -> dict[str, Any]:
    """Summary, stages, findings and chance baselines of one run (a dict ready for report.json)."""
    out: dict[str, Any] = {
        "kind": "run",
        "name": run.name,
        "path": str(run.path),
        "task": run.task,
        "format_version": run.format_version or 1,
        "monitor": run.monitor,
        "mode": run.mode,
        "missing": list(run.missing),
        "stages": [],
        "findings": [],
        "chance": None,
    }
    cur = Curves.of(run)
    out["curves"] = cur
    n = len(cur.epoch)
    if n == 0 or not run.monitor:
        out["summary"] = _summary(run, cur, None)
        if n and not run.monitor:
            out["missing"].append("no monitored metric named in history.json or config.yaml: nothing to analyse")
        return out
    val = cur.get(run.monitor)
    if val is None or not np.isfinite(val).any():
        out["missing"].append(f"no finite {run.monitor} in any epoch record: stages and most findings need it")
        val = None
    best_idx, note = _best_index(run, cur, val)
    if note:
        out["missing"].append(note)
    out["summary"] = _summary(run, cur, best_idx)
    metric = run.monitor.split("/", 1)[-1]
    chance, why = chance_baselines(metric, run)
    out["chance"] = chance
    if why:
        out["missing"].append(why)
    ctx = _Context(run, cur, val, best_idx, metric)
    if val is not None:
        out["stages"] = detect_stages(ctx)
    findings = [f for rule in RUN_RULES if (f := rule(ctx)) is not None]
    if chance and val is not None:
        f = rule_at_chance_run(ctx, chance)
        if f:
            findings.append(f)
    for f in findings:
        f.source = run.name
    out["findings"] = [asdict(f) for f in findings]
    return out


def _best_index(run: Run, cur: Curves, val: np.ndarray | None) -> tuple[int | None, str | None]:
    if val is None:
        return None, None
    epochs = list(cur.epoch.astype(int))
    if run.best["epoch"] in epochs and np.isfinite(val[epochs.index(run.best["epoch"])]):
        return epochs.index(run.best["epoch"]), None
    sign = 1.0 if run.mode != "min" else -1.0
    s = np.where(np.isfinite(val), sign * val, -np.inf)
    return int(np.argmax(s)), "history.json's best epoch is missing or has no value: recomputed from the curve"


def _summary(run: Run, cur: Curves, b: int | None) -> dict[str, Any]:
    metric = (run.monitor or "").split("/", 1)[-1]
    val, train = cur.get(run.monitor), cur.get(f"train/{metric}")
    secs, vsecs = cur.get("seconds"), cur.get("val_seconds")
    sps, mem = cur.get("samples_per_s"), cur.get("peak_memory_mb")
    cfg, info = run.config, run.info
    train_s = float(np.nansum(secs)) if secs is not None and np.isfinite(secs).any() else math.nan
    val_s = float(np.nansum(vsecs)) if vsecs is not None and np.isfinite(vsecs).any() else math.nan
    return {
        "monitor": run.monitor,
        "mode": run.mode,
        "best_epoch": int(cur.epoch[b]) if b is not None else None,
        "best_value": _at(val, b),
        "train_at_best": _at(train, b),
        "gap_at_best": _at(train, b) - _at(val, b),
        "lr_at_best": _at(cur.get("lr"), b),
        "final_value": _at(val, len(cur.epoch) - 1) if len(cur.epoch) else math.nan,
        "epochs_trained": len(cur.epoch),
        "epochs_planned": run.planned_epochs(),
        "stop_reason": run.stop_reason,
        "wall_seconds": np.nansum([train_s, val_s]) if np.isfinite([train_s, val_s]).any() else math.nan,
        "train_seconds": train_s,
        "val_seconds": val_s,
        "samples_per_s": float(np.nanmedian(sps)) if sps is not None and np.isfinite(sps).any() else math.nan,
        "peak_memory_mb": float(np.nanmax(mem)) if mem is not None and np.isfinite(mem).any() else math.nan,
        "parameters": info.get("parameters"),
        "model": info.get("model") or cfg_get(cfg, "model.name"),
        "scan_backend": info.get("scan_backend") or cfg_get(cfg, "runtime.scan_backend"),
        "device": info.get("device") or cfg_get(cfg, "runtime.device"),
        "world_size": info.get("world_size"),
        "precision": info.get("precision") or cfg_get(cfg, "runtime.precision"),
        "dataset": info.get("dataset"),
        "schedule": info.get("schedule") or cfg_get(cfg, "schedule.name"),
        "warmup_epochs": run.warmup_epochs(),
        "lr_peak_config": cfg_get(cfg, "optim.lr"),
    }


class _Context:
    """What every run rule reads: direction-aware scores, smoothed curves, the gap and the noise levels."""

    def __init__(self, run: Run, cur: Curves, val: np.ndarray | None, best: int | None, metric: str) -> None:
        self.run, self.cur, self.val, self.best, self.metric = run, cur, val, best, metric
        self.monitor = run.monitor or ""
        self.sign = -1.0 if run.mode == "min" else 1.0
        self.n = len(cur.epoch)
        self.w = smooth_window(self.n)
        self.epochs = cur.epoch
        self.train = cur.get(f"train/{metric}") if self.monitor.startswith("val/") else None
        self.lr = cur.get("lr")
        if val is not None:
            self.s = self.sign * val
            self.s_sm = smooth(self.s, self.w)
            self.noise = noise(self.s)
            first = int(np.flatnonzero(np.isfinite(self.s_sm))[0])
            self.top = float(np.nanmax(self.s_sm))
            self.gain = self.top - float(self.s_sm[first])
            self.scale = self.gain if self.gain > 0 else max(abs(self.top), 1e-12)
        self.gap = None if self.train is None or val is None else self.sign * (self.train - val)

    def e(self, i: int) -> int:
        return int(self.epochs[i])

    def v(self, score: float) -> float:  # a score back in the metric's own units
        return self.sign * score


# ---------------------------------------------------------------------------------------------- stages


def detect_stages(c: _Context) -> list[dict[str, Any]]:
    n = c.n
    label = np.array([""] * n, dtype=object)
    warm = c.run.warmup_epochs() or 0
    label[c.epochs <= warm] = "warmup"
    post = np.flatnonzero(label == "")
    finite = [i for i in post if np.isfinite(c.s_sm[i])]
    if finite:
        start = finite[0]
        b = c.best if c.best is not None and c.best >= start else max(finite, key=lambda i: c.s_sm[i])
        top = float(np.nanmax(c.s_sm[post]))
        gain = top - float(c.s_sm[start])
        if gain <= THRESHOLDS["noise_factor"] * c.noise:  # no gain beyond the noise: one plateau
            gain = 0.0
        band = top - max(THRESHOLDS["peak_band"] * gain, THRESHOLDS["noise_factor"] * c.noise if gain == 0 else 0.0)
        lo = hi = b
        while lo - 1 >= start and c.s_sm[lo - 1] >= band:
            lo -= 1
        while hi + 1 < n and c.s_sm[hi + 1] >= band:
            hi += 1
        if gain <= 0:
            lo = start
        target = c.s_sm[start] + THRESHOLDS["fast_learning_share"] * gain
        reach = next((i for i in range(start, lo) if c.s_sm[i] >= target), lo)
        label[start : reach + 1 if reach < lo else lo] = "fast learning"
        label[reach + 1 : lo] = "steady climb"
        label[lo : hi + 1] = "peak"
        label[hi + 1 :] = "late stage"
        label[post[0] : start] = "fast learning"  # leading epochs without a finite value
    stages: list[dict[str, Any]] = []
    for name in STAGE_RULES:
        idx = np.flatnonzero(label == name)
        if len(idx) == 0:
            continue
        gap = c.train[idx] - c.val[idx] if c.train is not None else np.full(len(idx), np.nan)
        stages.append(
            {
                "stage": name,
                "first_epoch": c.e(idx[0]),
                "last_epoch": c.e(idx[-1]),
                "epochs": len(idx),
                "mean_val": _mean(c.val[idx]),
                "mean_lr": _mean(c.lr[idx]) if c.lr is not None else math.nan,
                "mean_gap": _mean(gap),
                "rule": STAGE_RULES[name],
            }
        )
    return stages


# ---------------------------------------------------------------------------------------------- run rules


def _tail(c: _Context) -> np.ndarray:
    """Indices of the last quarter of the epochs (at least 5)."""
    return np.arange(max(0, c.n - max(5, c.n // 4)), c.n)


def rule_still_improving(c: _Context) -> Finding | None:
    if c.val is None or c.n < 5 or c.run.stop_reason == "diverged":
        return None
    tail = _tail(c)
    slope, t = trend(c.epochs[tail], c.s[tail])
    if not np.isfinite(slope):
        return None
    gain = slope * float(c.epochs[tail[-1]] - c.epochs[tail[0]])
    need = THRESHOLDS["still_improving_gain"] * c.scale
    if not (gain > need and t > THRESHOLDS["still_improving_t"] and c.best is not None and c.best >= tail[0]):
        return None
    rising = "rising" if c.sign > 0 else "falling"
    return Finding(
        "still_improving",
        "warning",
        f"{c.monitor} was still {rising} over the last {len(tail)} epochs ({c.e(tail[0])}–{c.e(tail[-1])}: "
        f"{'+' if c.v(gain) >= 0 else ''}{fmt(c.v(gain))} on the fitted line, t = {t:.1f}) and was best at "
        f"epoch {c.e(c.best)} of {c.n}: train longer (train.epochs) or resume.",
        {
            "window": [c.e(tail[0]), c.e(tail[-1])],
            "gain": c.v(gain),
            "slope_per_epoch": c.v(slope),
            "t": t,
            "needed_gain": need,
            "best_epoch": c.e(c.best),
            "epochs": c.n,
        },
    )


def rule_degradation(c: _Context) -> Finding | None:
    if c.val is None or c.best is None or c.n - 1 - c.best < 3:
        return None
    end = np.arange(max(c.best + 1, c.n - 5), c.n)
    final = _mean(c.s[end])
    top = float(np.nanmax(c.s_sm[: c.best + 1 + c.w // 2]))
    drop = top - final
    need = max(THRESHOLDS["degradation_drop"] * c.scale, THRESHOLDS["noise_factor"] * c.noise)
    if not (np.isfinite(drop) and drop > need):
        return None
    rel = drop / abs(top) if top else math.nan
    return Finding(
        "degradation_after_best",
        "warning",
        f"{c.monitor} got worse after its best at epoch {c.e(c.best)}: smoothed best {fmt(c.v(top))}, mean of "
        f"the last {len(end)} epochs {fmt(c.v(final))} (worse by {fmt(drop)}, {rel:.1%}); {c.n - 1 - c.best} "
        "epochs ran after the best: best.pt keeps the best epoch, and early stopping (train.patience) would "
        "have stopped sooner.",
        {
            "best_epoch": c.e(c.best),
            "smoothed_best": c.v(top),
            "final_mean": c.v(final),
            "drop": drop,
            "relative_drop": rel,
            "needed_drop": need,
            "final_epochs": [c.e(end[0]), c.e(end[-1])],
        },
    )


def rule_overfitting(c: _Context) -> Finding | None:
    if c.gap is None or c.best is None or c.n - 1 - c.best < 3:
        return None
    g_sm = smooth(c.gap, c.w)
    end = np.arange(max(c.best + 1, c.n - 5), c.n)
    g_end, g_best = _mean(c.gap[end]), float(g_sm[c.best])
    rise = g_end - g_best
    need = max(THRESHOLDS["overfit_gap_rise"] * c.scale, THRESHOLDS["noise_factor"] * noise(c.gap))
    train_s = c.sign * c.train
    train_gain = _mean(train_s[end]) - float(smooth(train_s, c.w)[c.best])
    if not (np.isfinite(rise) and rise > need and train_gain > 0):
        return None
    onset = int(np.nanargmax(np.where(np.isfinite(c.s_sm), c.s_sm, -np.inf)))  # where validation stopped improving
    what = "train − validation" if c.sign > 0 else "validation − train"
    return Finding(
        "overfitting",
        "warning",
        f"overfitting from about epoch {c.e(onset)}, where the smoothed {c.monitor} was at its best: the {what} gap in "
        f"{c.metric} widened from {fmt(g_best)} at the best epoch {c.e(c.best)} to {fmt(g_end)} over the last "
        f"{len(end)} epochs while train/{c.metric} "
        f"kept improving (by {fmt(train_gain)}): more regularisation (optim.weight_decay, model.dropout, "
        "augmentation), more data, or stop at the best epoch.",
        {
            "onset_epoch": c.e(onset),
            "gap_at_best": g_best,
            "gap_final": g_end,
            "gap_rise": rise,
            "needed_rise": need,
            "train_gain_after_best": train_gain,
            "gap_is": what,
        },
    )


def rule_lr_decayed_early(c: _Context) -> Finding | None:
    if c.lr is None or c.val is None or not np.isfinite(c.lr).any() or c.gain <= 0:
        return None
    lr = c.lr
    peak = int(np.nanargmax(lr))
    small = THRESHOLDS["lr_small_fraction"] * lr[peak]
    d = next((i for i in range(peak + 1, c.n) if lr[i] <= small), None)
    if d is None or not np.isfinite(c.s_sm[d]):
        return None
    first = float(c.s_sm[np.flatnonzero(np.isfinite(c.s_sm))[0]])
    share = (float(c.s_sm[d]) - first) / c.gain
    later = c.s_sm[d + 1 :]
    remaining = float(np.nanmax(later)) - float(c.s_sm[d]) if np.isfinite(later).any() else math.nan
    need = max((1 - THRESHOLDS["lr_early_share"]) * c.gain, THRESHOLDS["noise_factor"] * c.noise)
    if not (share < THRESHOLDS["lr_early_share"] and remaining > need):
        return None
    return Finding(
        "lr_decayed_early",
        "warning",
        f"the LR had decayed to {fmt(lr[d], 3)} ({lr[d] / lr[peak]:.1%} of its peak {fmt(lr[peak], 3)}) by epoch "
        f"{c.e(d)}, when {c.monitor} had made only {share:.0%} of its gain (smoothed {fmt(c.v(c.s_sm[d]))}, top "
        f"{fmt(c.v(c.top))}) and gained {fmt(remaining)} more at that small LR: decay later (schedule.name, "
        "train.epochs, "
        "schedule.min_lr) or raise optim.lr.",
        {
            "decayed_epoch": c.e(d),
            "lr_then": float(lr[d]),
            "lr_peak": float(lr[peak]),
            "peak_lr_epoch": c.e(peak),
            "share_of_gain_then": share,
            "gain_after": remaining,
            "needed_gain_after": need,
        },
    )


def rule_low_and_close(c: _Context) -> Finding | None:
    if c.train is None or c.val is None or c.sign < 0 or c.metric not in BOUNDED_01 or c.n < 5:
        return None
    tail = _tail(c)
    tr, va = _mean(c.train[tail]), _mean(c.val[tail])
    slope, t = trend(c.epochs[tail], c.train[tail])
    train_gain = slope * float(c.epochs[tail[-1]] - c.epochs[tail[0]]) if np.isfinite(slope) else 0.0
    flat = not (train_gain > THRESHOLDS["still_improving_gain"] * c.scale and t > THRESHOLDS["still_improving_t"])
    low, close = THRESHOLDS["low_metric"], THRESHOLDS["close_gap"]
    if not (tr <= low and va <= low and abs(tr - va) <= close and flat):
        return None
    return Finding(
        "low_and_close",
        "warning",
        f"train and validation {c.metric} both ended low and close: {fmt(tr)} and {fmt(va)} over the last "
        f"{len(tail)} epochs (at most {low}, {fmt(abs(tr - va))} apart), with the training metric flat: the model "
        "does not fit even the training data; too little capacity (model.*) or too much regularisation "
        "(optim.weight_decay, model.dropout, augmentation).",
        {
            "train_mean": tr,
            "val_mean": va,
            "window": [c.e(tail[0]), c.e(tail[-1])],
            "train_gain": train_gain,
            "train_t": t,
            "low": low,
            "close": close,
        },
    )


def rule_divergence(c: _Context) -> Finding | None:
    bad: list[str] = []
    ev: dict[str, Any] = {"stop_reason": c.run.stop_reason}
    for key in dict.fromkeys(("train/loss", "val/loss", c.monitor, "lr")):
        y = c.cur.get(key)
        if y is None or not np.isfinite(y).any():
            continue
        first_ok = int(np.flatnonzero(np.isfinite(y))[0])
        nonfinite = [i for i in range(first_ok, c.n) if not np.isfinite(y[i])]
        if nonfinite:
            i = nonfinite[0]
            bad.append(f"{key} is {fmt(y[i])} from epoch {c.e(i)}")
            ev.setdefault("non_finite", {})[key] = c.e(i)
    loss = c.cur.get("train/loss")
    if loss is not None and np.isfinite(loss).sum() >= 3:
        ok = np.flatnonzero(np.isfinite(loss))
        lo, last = int(ok[np.argmin(loss[ok])]), int(ok[-1])
        if loss[last] > THRESHOLDS["blowup_factor"] * loss[lo] and loss[last] > loss[ok[0]] and loss[lo] > 0:
            bad.append(
                f"train/loss rose to {fmt(loss[last])} at epoch {c.e(last)} from a minimum of "
                f"{fmt(loss[lo])} at epoch {c.e(lo)}"
            )
            ev["blowup"] = {"min": float(loss[lo]), "min_epoch": c.e(lo), "last": float(loss[last])}
    if c.run.stop_reason == "diverged":
        bad.insert(0, "the run stopped with stop_reason 'diverged'")
    if not bad:
        return None
    return Finding(
        "divergence",
        "warning",
        f"training diverged: {'; '.join(bad)}: lower optim.lr, keep optim.grad_clip on, or train in fp32 "
        "(runtime.precision).",
        ev,
    )


def rule_grad_spikes(c: _Context) -> Finding | None:
    gmean, gmax = c.cur.get("grad_norm_mean"), c.cur.get("grad_norm_max")
    if gmean is None or not np.isfinite(gmean).any():
        return None
    base = float(np.nanmedian(gmean))
    if not base > 0:
        return None
    peak = gmax if gmax is not None else gmean
    k = THRESHOLDS["grad_spike_factor"]
    with np.errstate(invalid="ignore"):
        spikes = np.flatnonzero(np.isfinite(peak) & (peak > k * base))  # non-finite norms: the divergence rule
    if len(spikes) == 0:
        return None
    worst = int(spikes[np.argmax(peak[spikes])])
    listed = ", ".join(str(c.e(i)) for i in spikes[:10]) + (" …" if len(spikes) > 10 else "")
    return Finding(
        "grad_norm_spikes",
        "warning",
        f"gradient-norm spikes in {len(spikes)} epoch(s) ({listed}): up to {fmt(peak[worst])} at epoch "
        f"{c.e(worst)} against a median epoch mean of {fmt(base)} ({fmt(peak[worst] / base, 3)}x; the rule fires "
        f"above {k:g}x): keep optim.grad_clip on or lower optim.lr.",
        {
            "epochs": [c.e(i) for i in spikes],
            "median_epoch_mean": base,
            "worst": float(peak[worst]),
            "worst_epoch": c.e(worst),
            "factor": k,
        },
    )


def rule_at_chance_run(c: _Context, chance: dict[str, Any]) -> Finding | None:
    if c.best is None:
        return None
    maj, drawn = chance["majority_class"]["value"], chance["class_prior_draw"]["value"]
    best = float(c.val[c.best])
    margin = THRESHOLDS["chance_margin"]
    if best > max(maj, drawn) + margin:
        return None
    return Finding(
        "at_chance",
        "warning",
        f"{c.monitor} never rose above chance: its best {fmt(best)} (epoch {c.e(c.best)}) against {fmt(maj)} for "
        f"always predicting the majority class '{chance['majority_class']['class']}' and {fmt(drawn)} for drawing "
        f"classes from the {chance['priors_from'].replace('class_counts_', '')} priors, on the validation pixels: "
        "the model has learned nothing beyond the class frequencies.",
        {"metric": c.metric, "best": best, "majority_class": maj, "class_prior_draw": drawn, "margin": margin},
    )


RUN_RULES = (
    rule_divergence,
    rule_still_improving,
    rule_degradation,
    rule_overfitting,
    rule_lr_decayed_early,
    rule_low_and_close,
    rule_grad_spikes,
)


# ---------------------------------------------------------------------------------------------- cv, eval, sweep


def analyse_cv(cv: CV) -> dict[str, Any]:
    folds = cv.folds
    keys = list(
        dict.fromkeys(
            k for f in folds for k, v in f.items() if k not in ("fold", "best_epoch") and isinstance(v, int | float)
        )
    )
    mean, std, missing = dict(cv.mean), dict(cv.std), list(cv.missing)
    for k in keys:
        v = np.array([number(f.get(k)) for f in folds])
        v = v[np.isfinite(v)]
        if k not in mean and len(v):
            mean[k] = float(v.mean())
            std[k] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    findings = []
    for k in keys:
        m, s = mean.get(k, math.nan), std.get(k, math.nan)
        vals = [(number(f.get(k)), f.get("fold")) for f in folds if np.isfinite(number(f.get(k)))]
        if not (np.isfinite(m) and np.isfinite(s) and abs(m) > 1e-12 and len(vals) > 1):
            continue
        if s / abs(m) > THRESHOLDS["cv_spread"]:
            lo, hi = min(vals, key=lambda x: x[0]), max(vals, key=lambda x: x[0])
            findings.append(
                Finding(
                    "cv_spread",
                    "warning",
                    f"{k} varies a lot across folds: {fmt(m)} ± {fmt(s)} (the std is {s / abs(m):.0%} of the mean; "
                    f"folds range from {fmt(lo[0])} (fold {lo[1]}) to {fmt(hi[0])} (fold {hi[1]})): the mean is an "
                    "unstable estimate; compare the folds' class counts and use more or larger folds.",
                    {
                        "metric": k,
                        "mean": m,
                        "std": s,
                        "ratio": s / abs(m),
                        "min": lo,
                        "max": hi,
                        "threshold": THRESHOLDS["cv_spread"],
                    },
                    cv.name,
                )
            )
    per_class: dict[str, list[float]] = {}
    for f in folds:
        if isinstance(f.get("per_class_iou"), dict):
            for name, v in f["per_class_iou"].items():
                per_class.setdefault(str(name), []).append(number(v))
    classes = [
        {"class": k, "mean_iou": _mean(np.array(v)), "std_iou": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0}
        for k, v in per_class.items()
    ]
    return {
        "kind": "cv",
        "name": cv.name,
        "path": str(cv.path),
        "monitor": cv.monitor,
        "selected_on": cv.selected_on,
        "headline": cv.headline,
        "metrics": keys,
        "folds": folds,
        "mean": mean,
        "std": std,
        "per_class": classes,
        "missing": missing,
        "findings": [asdict(f) for f in findings],
    }


def analyse_eval(ev: Eval) -> dict[str, Any]:
    m = ev.metrics
    out: dict[str, Any] = {
        "kind": "eval",
        "name": ev.name,
        "path": str(ev.path),
        "task": ev.task,
        "missing": list(ev.missing),
        "findings": [],
    }
    if ev.task == "reconstruction":
        fractions = m.get("per_fraction") if isinstance(m.get("per_fraction"), list) else []
        rows = [r for r in fractions if isinstance(r, dict)]
        out["columns"] = list(dict.fromkeys(k for r in rows for k in r))
        out["rows"] = rows
        out["protocol"] = m.get("protocol") if isinstance(m.get("protocol"), dict) else {}
        return out
    out["headline"] = {k: number(m.get(k)) for k in CHANCE_METRICS}
    per_class = m.get("per_class") if isinstance(m.get("per_class"), dict) else {}
    names = list(per_class)
    rows = [
        {
            "class": k,
            **{
                f: number(v.get(f)) if isinstance(v, dict) else math.nan
                for f in ("iou", "precision", "recall", "f1", "support")
            },
        }
        for k, v in per_class.items()
    ]
    out["rows"] = rows
    cm = np.asarray(m.get("confusion_matrix") or [], dtype=object)
    has_cm = cm.ndim == 2 and cm.shape == (len(names), len(names))
    present = [r for r in rows if np.isfinite(r["iou"])]
    absent = [r["class"] for r in rows if not np.isfinite(r["iou"])]
    if absent:
        out["missing"].append(f"no IoU for {', '.join(absent)}: absent from the evaluated pixels and predictions")
    weakest = sorted(present, key=lambda r: r["iou"])[: min(3, len(present))]
    for r in weakest:
        if has_cm:
            i = names.index(r["class"])
            row = np.array([number(x) for x in cm[i]])
            row[i] = -1
            j = int(np.nanargmax(row)) if row.max() > 0 else None
            r["confused_with"] = names[j] if j is not None else None
            r["confused_share"] = float(row[j] / r["support"]) if j is not None and r["support"] > 0 else math.nan
    out["weakest"] = weakest
    findings = []
    miou = out["headline"]["miou"]
    share = THRESHOLDS["weak_class_share"]
    weak = [r for r in present if np.isfinite(miou) and r["iou"] < share * miou]
    if weak:
        parts = [
            f"{r['class']} {fmt(r['iou'])}"
            + (f" (mostly taken for {r['confused_with']})" if r.get("confused_with") else "")
            for r in sorted(weak, key=lambda r: r["iou"])
        ]
        findings.append(
            Finding(
                "weak_classes",
                "warning",
                f"{len(weak)} class(es) with IoU below {share:.0%} of the mIoU {fmt(miou)}: {'; '.join(parts)}: "
                "check their labels and support, or weight them in the loss (loss.class_weights).",
                {"miou": miou, "share": share, "classes": {r["class"]: r["iou"] for r in weak}},
                ev.name,
            )
        )
    chance = m.get("chance") if isinstance(m.get("chance"), dict) else {}
    maj = chance.get("majority_class") if isinstance(chance.get("majority_class"), dict) else {}
    drawn = chance.get("class_prior_draw") if isinstance(chance.get("class_prior_draw"), dict) else {}
    out["chance"] = {
        k: {"value": out["headline"][k], "majority_class": number(maj.get(k)), "class_prior_draw": number(drawn.get(k))}
        for k in CHANCE_METRICS
    }
    out["chance_majority_class"] = maj.get("class")
    for k, row in out["chance"].items():
        base = np.nanmax([row["majority_class"], row["class_prior_draw"], -np.inf])
        if np.isfinite(row["value"]) and np.isfinite(base) and row["value"] <= base + THRESHOLDS["chance_margin"]:
            findings.append(
                Finding(
                    "at_chance",
                    "warning",
                    f"{k} {fmt(row['value'])} is at or below its chance baseline on the same pixels: majority class "
                    f"('{maj.get('class')}') {fmt(row['majority_class'])}, class-prior draw "
                    f"{fmt(row['class_prior_draw'])}.",
                    {"metric": k, **row, "margin": THRESHOLDS["chance_margin"]},
                    ev.name,
                )
            )
    out["findings"] = [asdict(f) for f in findings]
    return out


def analyse_sweep(sw: Sweep) -> dict[str, Any]:
    rows = sw.rows
    out: dict[str, Any] = {
        "kind": "sweep",
        "name": sw.name,
        "path": str(sw.path),
        "rows": rows,
        "columns": list(dict.fromkeys(k for r in rows for k in r)),
        "baselines": sw.baselines,
        "conclusions": sw.conclusions,
        "missing": list(sw.missing),
        "protocol": sw.protocol,
    }
    findings: list[Finding] = []
    psnr_key = "psnr_mean" if any(np.isfinite(number(r.get("psnr_mean"))) for r in rows) else "psnr_sample"
    scored = [r for r in rows if np.isfinite(number(r.get(psnr_key)))]
    best = max(scored, key=lambda r: number(r[psnr_key])) if scored else None
    out["best"] = best
    out["best_by"] = psnr_key
    gaps = [number(r.get("psnr_mean")) - number(r.get("psnr_sample")) for r in rows]
    gaps = [g for g in gaps if np.isfinite(g)]
    out["sample_mean_gap"] = {"median": float(np.median(gaps)), "min": min(gaps), "max": max(gaps)} if gaps else None
    if gaps and (np.median(gaps) > THRESHOLDS["posterior_gap_db"] or np.median(gaps) < 0):
        g = float(np.median(gaps))
        what = (
            "the samples are noisier than exact posterior samples would be"
            if g > 0
            else "the mean of the samples is worse than a single sample"
        )
        findings.append(
            Finding(
                "sample_mean_gap",
                "warning",
                f"the median PSNR gap of the sample mean over one sample is {fmt(g, 3)} dB (exact posterior samples: "
                f"3.01 dB for the posterior mean, less for a mean of K samples): {what}.",
                {"median_gap_db": g, "threshold_db": THRESHOLDS["posterior_gap_db"]},
                sw.name,
            )
        )
    base_ok = [b for b in sw.baselines if np.isfinite(number(b.get("psnr")))]
    if best is not None and base_ok:
        top = max(base_ok, key=lambda b: number(b["psnr"]))
        if number(best[psnr_key]) <= number(top["psnr"]):
            findings.append(
                Finding(
                    "below_baseline",
                    "warning",
                    f"no solver setting beats the best baseline: best {psnr_key} {fmt(number(best[psnr_key]))} dB "
                    f"({best.get('solver')}, {best.get('nfe')} NFE) against {top.get('name')} "
                    f"{fmt(number(top['psnr']))} dB.",
                    {"best": best, "baseline": top},
                    sw.name,
                )
            )
    for solver in dict.fromkeys(str(r.get("solver")) for r in scored):
        mine = sorted(
            (r for r in scored if str(r.get("solver")) == solver and np.isfinite(number(r.get("nfe")))),
            key=lambda r: number(r["nfe"]),
        )
        if len(mine) >= 2:
            drop = number(mine[0][psnr_key]) - number(mine[-1][psnr_key])
            if drop > THRESHOLDS["psnr_drop_db"]:
                findings.append(
                    Finding(
                        "psnr_falls_with_steps",
                        "info",
                        f"{solver}: {psnr_key} falls by {fmt(drop, 3)} dB from {fmt(number(mine[0]['nfe']))} to "
                        f"{fmt(number(mine[-1]['nfe']))} NFE; few steps approximate the posterior mean, which has the "
                        "higher PSNR, while more steps give sharper samples.",
                        {"solver": solver, "drop_db": drop, "nfe": [number(mine[0]["nfe"]), number(mine[-1]["nfe"])]},
                        sw.name,
                    )
                )
    out["findings"] = [asdict(f) for f in findings]
    return out


# ---------------------------------------------------------------------------------------------- --vs


HEADLINE = (
    ("best_value", "best {monitor}"),
    ("best_epoch", "best epoch"),
    ("train_at_best", "{train} at best"),
    ("gap_at_best", "train − val at best"),
    ("lr_at_best", "LR at best"),
    ("final_value", "last {monitor}"),
    ("epochs_trained", "epochs trained"),
    ("wall_seconds", "wall time (s)"),
    ("samples_per_s", "samples/s"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("parameters", "parameters"),
)
SAME_METRIC_ONLY = ("best_value", "train_at_best", "gap_at_best", "final_value")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in config.items():
        out.update(
            flatten(v, f"{prefix}.{k}" if prefix else str(k))
            if isinstance(v, dict) and v
            else {f"{prefix}.{k}" if prefix else str(k): v}
        )
    return out


def compare(current: Run, cur: dict[str, Any], previous: Run, prev: dict[str, Any]) -> dict[str, Any]:
    """Config keys that differ, and the headline numbers side by side with absolute and relative change."""
    notes = []
    if current.config is None or previous.config is None:
        notes.append("config differences need config.yaml in both runs")
        diff = []
    else:
        a, b = flatten(previous.config), flatten(current.config)
        diff = [
            {"key": k, "previous": a.get(k, "(absent)"), "current": b.get(k, "(absent)")}
            for k in sorted(set(a) | set(b))
            if a.get(k, "(absent)") != b.get(k, "(absent)")
        ]
    same_metric = current.monitor == previous.monitor
    if not same_metric:
        notes.append(
            f"the runs monitor different metrics ({previous.monitor} and {current.monitor}): their "
            "metric values are not compared"
        )
    rows = []
    for key, label in HEADLINE:
        if key in SAME_METRIC_ONLY and not same_metric:
            continue
        p, c = number(prev["summary"].get(key)), number(cur["summary"].get(key))
        change = c - p
        rel = change / abs(p) if np.isfinite(p) and p != 0 else math.nan
        rows.append(
            {
                "key": key,
                "label": label.format(monitor=current.monitor, train="train/" + str(current.monitor).split("/", 1)[-1]),
                "previous": p,
                "current": c,
                "change": change,
                "relative": rel,
            }
        )
    return {
        "current": current.name,
        "previous": previous.name,
        "previous_path": str(previous.path),
        "config_diff": diff,
        "headline": rows,
        "notes": notes,
    }
