"""Values made writable as strict JSON: one helper for every writer (run history, metrics, sweeps, reports).

It imports nothing from ssmseg, so the report (which reads files and never imports the engine) and the engine
share it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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
