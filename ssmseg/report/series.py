"""Numbers for sentences and per-epoch series: formatting, JSON cleaning, smoothing, noise and trends.

Every series is a float array over epochs with NaN where a value is absent; nothing here knows what it holds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssmseg.jsonsafe import clean  # noqa: F401  (the report's writers import it from here)


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


def smooth_window(n: int) -> int:
    """The centred moving-mean window for a series of ``n`` epochs (odd, 3 or more)."""
    return 2 * max(1, n // 30) + 1


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean over the finite values in each window (NaN where a window has none). (n,) -> (n,)"""
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
    """Robust standard deviation of one epoch's value around the trend: the MAD of first differences (less
    their median, the trend) / sqrt 2. 0 with fewer than 3 finite values (unknown)."""
    d = np.diff(y[np.isfinite(y)])
    if len(d) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y against x and its t statistic (inf for a perfect line; NaN under 3 points)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan, math.nan
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float((resid**2).sum()) / (len(x) - 2) / float((xc**2).sum()))
    return slope, (math.copysign(math.inf, slope) if se == 0 and slope != 0 else slope / se if se else 0.0)


def mean(y: np.ndarray) -> float:
    """Mean of the finite values (NaN when there are none)."""
    y = y[np.isfinite(y)]
    return float(y.mean()) if len(y) else math.nan


def at(y: np.ndarray | None, i: int | None) -> float:
    """``y[i]`` as a float, NaN when the series or the index is missing."""
    return float(y[i]) if y is not None and i is not None else math.nan
