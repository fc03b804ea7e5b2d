"""Training stages named from the monitored metric against its own noise.

Warmup comes from the schedule. After it, a run that gained nothing beyond its noise (and shows no trend) is
one plateau. Otherwise: fast learning until 75% of the gain to the top, a steady climb after it (a plateau
where that climb's own gain is within the noise), the peak (only the contiguous epochs around the best whose
smoothed value is within 5% of the gain, or the smoothed noise, of the top), and after the peak a decline
when the metric fell beyond its noise, else a plateau.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssmseg.report.rules import THRESHOLDS, Context
from ssmseg.report.series import mean, trend

STAGE_RULES = {
    "warmup": "epochs 1 to schedule.warmup_epochs (linear LR warmup)",
    "fast learning": "after warmup until the smoothed validation metric has made 75% of its gain to the peak",
    "steady climb": "from there until the peak, while its gain is beyond the noise",
    "plateau": f"a stretch whose gain or loss is within {THRESHOLDS['noise_factor']:g} noise SDs and shows no trend",
    "peak": "contiguous epochs around the best whose smoothed metric is within 5% of the gain (or the smoothed "
    "noise) of its top",
    "decline": f"after the peak, a mean worse than the top by more than {THRESHOLDS['degradation_drop']:.0%} of the "
    f"gain and {THRESHOLDS['noise_factor']:g} noise SDs of that mean",
}


def _moved(c: Context, idx: np.ndarray) -> bool:
    """Whether the score changed beyond its noise over the epochs ``idx``: the smoothed change exceeds
    noise_factor noise SDs, or a fitted line has t > still_improving_t."""
    if len(idx) < 2:
        return False
    change = abs(float(c.s_sm[idx[-1]] - c.s_sm[idx[0]]))
    _, t = trend(c.epochs[idx], c.s[idx])
    return change > THRESHOLDS["noise_factor"] * c.noise or (
        np.isfinite(t) and abs(t) > THRESHOLDS["still_improving_t"]
    )


def label_epochs(c: Context) -> np.ndarray:
    """One stage name per epoch (n,)."""
    n = c.n
    label = np.array([""] * n, dtype=object)
    warm = c.run.warmup_epochs() or 0
    label[c.epochs <= warm] = "warmup"
    post = np.flatnonzero(label == "")
    finite = [i for i in post if np.isfinite(c.s_sm[i])]
    if not finite:
        label[post] = "plateau"
        return label
    start = finite[0]
    label[post[0] : start] = "fast learning"  # leading epochs without a finite value
    span = np.arange(start, n)
    top = float(np.nanmax(c.s_sm[span]))
    gain = top - float(c.s_sm[start])
    if gain <= 0 or not _moved(c, span):
        label[span] = "plateau"
        return label
    b = c.best if c.best is not None and c.best >= start else int(start + np.nanargmax(c.s_sm[span]))
    band = top - max(THRESHOLDS["peak_band"] * gain, c.noise / math.sqrt(c.w))
    lo = hi = b
    while lo - 1 >= start and c.s_sm[lo - 1] >= band:
        lo -= 1
    while hi + 1 < n and c.s_sm[hi + 1] >= band:
        hi += 1
    target = c.s_sm[start] + THRESHOLDS["fast_learning_share"] * gain
    reach = next((i for i in range(start, lo) if c.s_sm[i] >= target), lo - 1)
    label[start : reach + 1] = "fast learning"
    climb = np.arange(reach + 1, lo)
    label[climb] = "steady climb" if _moved(c, np.arange(reach, lo)) else "plateau"
    label[lo : hi + 1] = "peak"
    after = np.arange(hi + 1, n)
    if len(after):
        drop = float(np.nanmax(c.s_sm[lo : hi + 1])) - mean(c.s[after])
        need = max(THRESHOLDS["degradation_drop"] * gain, THRESHOLDS["noise_factor"] * c.noise / math.sqrt(len(after)))
        label[after] = "decline" if np.isfinite(drop) and drop > need else "plateau"
    return label


def detect_stages(c: Context) -> list[dict[str, Any]]:
    """Contiguous stretches of one stage, with their epochs, mean metric, mean LR and mean gap."""
    label = label_epochs(c)
    stages: list[dict[str, Any]] = []
    i = 0
    while i < c.n:
        j = i
        while j + 1 < c.n and label[j + 1] == label[i]:
            j += 1
        idx = np.arange(i, j + 1)
        gap = c.train[idx] - c.val[idx] if c.train is not None else np.full(len(idx), np.nan)
        stages.append(
            {
                "stage": str(label[i]),
                "first_epoch": c.e(i),
                "last_epoch": c.e(j),
                "epochs": len(idx),
                "mean_val": mean(c.val[idx]),
                "change": float(c.val[j] - c.val[i]) if np.isfinite(c.val[[i, j]]).all() else math.nan,
                "mean_lr": mean(c.lr[idx]) if c.lr is not None else math.nan,
                "mean_gap": mean(gap),
                "rule": STAGE_RULES[str(label[i])],
            }
        )
        i = j + 1
    return stages
