"""The named rules a run is judged by: thresholds, what each rule says, and the per-epoch context they read.

Every sentence the report prints about a run is made here by a named rule, from the data, with the evidence
that triggered it (``Finding.evidence``) and the figures or tables that show it (``Finding.refs``). The rules
are direction-aware: internally the monitored metric is turned into a score that goes up (``sign`` = -1 for
``mode: min``). Rules about cv folds, evaluations and comparisons live beside their analyses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssmseg.report.runs import Run
from ssmseg.report.series import noise, smooth, smooth_window

THRESHOLDS = {
    "fast_learning_share": 0.75,  # fast learning ends when this share of the start-to-peak gain is reached
    "peak_band": 0.05,  # the peak: epochs around the best within this share of the gain (or the smoothed noise)
    "still_improving_gain": 0.03,  # last-quarter gain, as a share of the whole gain, that counts as improving
    "still_improving_t": 3.0,  # and the t statistic of its slope
    "degradation_drop": 0.05,  # drop from the smoothed best to the final epochs, share of the gain
    "overfit_gap_rise": 0.05,  # rise of the gap after the best epoch, share of the gain
    "noise_factor": 3.0,  # changes smaller than this many noise standard deviations are ignored
    "lr_small_fraction": 0.1,  # the LR counts as decayed below this fraction of its peak
    "lr_early_share": 0.75,  # ... too early if less than this share of the gain had been made by then
    "low_metric": 0.5,  # bounded [0, 1] metrics: train and validation both at or below this are low
    "close_gap": 0.05,  # ... and close when |train - validation| is at most this
    "short_run_steps": 300,  # a run of fewer optimiser steps is too short to judge capacity
    "blowup_factor": 3.0,  # train loss ending this many times above its minimum (and above its start)
    "grad_spike_factor": 10.0,  # an epoch's largest gradient norm this many times the median epoch mean
    "chance_margin": 0.01,  # a metric within this of its chance baseline counts as at chance
    "cv_spread": 0.10,  # fold std above this share of |mean|
    "weak_class_share": 0.5,  # a class IoU below this share of the mIoU
}
_T = THRESHOLDS
RULES = [  # name, when it fires (shown in the report's rule table and report.json)
    ("no_values", "history.json has epochs but the monitored metric is missing or non-finite in every one"),
    (
        "divergence",
        "stop_reason is 'diverged'; train/loss, val/loss, the monitored metric or the LR turns NaN or "
        f"infinite (or is never finite); or train/loss ends {_T['blowup_factor']:g}x above its minimum and "
        "above its first value",
    ),
    (
        "still_improving",
        "a line fitted to the last quarter of the epochs (at least 5) gains more than "
        f"{_T['still_improving_gain']:.0%} of the run's whole gain with t > {_T['still_improving_t']:g}, and the best "
        "epoch lies in that window; in a run of 2 to 4 epochs: the last epoch is the best and its own gain is more "
        f"than {_T['still_improving_gain']:.0%} of the whole gain",
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
        "too_short",
        f"what low_and_close describes, in a run of fewer than {_T['short_run_steps']} optimiser steps: too short "
        "to judge the model's capacity",
    ),
    (
        "low_and_close",
        f"a [0, 1] metric monitored with mode max: train and validation over the last quarter both at "
        f"most {_T['low_metric']:g}, within {_T['close_gap']:g} of each other, and the training metric flat, in a run "
        f"of {_T['short_run_steps']} optimiser steps or more (when the steps are unknown: 10 epochs or more)",
    ),
    (
        "grad_norm_spikes",
        f"an epoch's grad_norm_max exceeds {_T['grad_spike_factor']:g}x the median epoch-mean "
        "gradient norm (non-finite norms are the divergence rule's)",
    ),
    (
        "at_chance",
        f"the best monitored value (or an eval metric) is at most {_T['chance_margin']:g} above the better "
        "of its majority-class and class-prior chance baselines, computed for that same metric on the scored pixels",
    ),
    (
        "cv_spread",
        f"a held-out metric's standard deviation across folds is more than {_T['cv_spread']:.0%} of |mean| "
        "(validation metrics only when nothing was scored held-out)",
    ),
    ("weak_classes", f"a class's IoU is below {_T['weak_class_share']:.0%} of the mIoU"),
    ("different_validation", "--vs: the two runs (or cv folds) were validated or scored on different pixels"),
    ("sweep", "a conclusion that sweep-steps wrote into sweep.json (the report does not recompute them)"),
]
BOUNDED_01 = ("oa", "miou", "mean_f1", "kappa", "ssim", "f1", "accuracy", "dice", "iou")


@dataclass
class Finding:
    rule: str
    severity: str  # warning | info
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    refs: list[str] = field(default_factory=list)  # what shows it: "curves", "summary", "stages", "chance", ...


@dataclass
class Curves:
    """Per-epoch columns of one run as float arrays, each (epochs,), NaN where absent."""

    epoch: np.ndarray
    cols: dict[str, np.ndarray]

    @classmethod
    def of(cls, run: Run) -> Curves:
        from ssmseg.report.runs import number

        keys = [k for k in dict.fromkeys(k for r in run.records for k in r) if k != "epoch"]
        cols = {k: np.array([number(r.get(k)) for r in run.records]) for k in keys}
        cols = {k: v for k, v in cols.items() if not np.isnan(v).all() or k in ("lr", "train/loss", run.monitor)}
        return cls(np.array([r["epoch"] for r in run.records], dtype=np.float64), cols)

    def get(self, key: str | None) -> np.ndarray | None:
        return self.cols.get(key) if key else None


class Context:
    """What every run rule reads: direction-aware scores (n,), smoothed curves, the gap, the noise levels and
    how much training the run did (optimiser steps)."""

    def __init__(
        self, run: Run, cur: Curves, val: np.ndarray | None, best: int | None, metric: str, size: dict[str, Any]
    ) -> None:
        self.run, self.cur, self.val, self.best, self.metric, self.size = run, cur, val, best, metric, size
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

    @property
    def total_steps(self) -> int | None:
        return self.size.get("optimizer_steps")

    def steps_words(self) -> str:
        """'72 optimiser steps (7 per epoch x 10 epochs)', or '' when the steps are unknown."""
        total, per = self.size.get("optimizer_steps"), self.size.get("steps_per_epoch")
        if total is None:
            return ""
        return f"{total} optimiser steps ({per} per epoch x {self.n} epochs)"

    def short(self) -> bool:
        total = self.total_steps
        return total is not None and total < THRESHOLDS["short_run_steps"]

    def e(self, i: int) -> int:
        return int(self.epochs[i])

    def v(self, score: float) -> float:  # a score back in the metric's own units
        return self.sign * score


def tail(c: Context) -> np.ndarray:
    """Indices of the last quarter of the epochs (at least 5)."""
    return np.arange(max(0, c.n - max(5, c.n // 4)), c.n)


def stop_advice(c: Context) -> str:
    """How to train more: resume when the run was cut by its time limit."""
    if c.run.stop_reason == "time_limit":
        return "it stopped at its time limit (train.time_limit): resume it with more time or more epochs"
    return "train longer (train.epochs) or resume"
