"""A solver x steps sweep (sweep.json): its settings, baselines and the conclusions sweep-steps wrote.

The conclusions are written once, by sweep-steps, into sweep.json; the report shows them (each as a finding
that points at the sweep's figure and tables) and never recomputes them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg.report.rules import Finding
from ssmseg.report.runs import Sweep, number

SWEEP_IMAGES = {"examples.png": "example fields, as sweep-steps drew them"}


def _conclusion(c: Any, source: str) -> Finding:
    """A sentence, or an object with rule/message (and evidence, severity), as a finding."""
    if isinstance(c, dict):
        message = str(c.get("message") or c.get("text") or c)
        evidence = c.get("evidence") if isinstance(c.get("evidence"), dict) else {}
        severity = c.get("severity") if c.get("severity") in ("warning", "info") else "info"
        rule = f"sweep: {c['rule']}" if isinstance(c.get("rule"), str) else "sweep"
        return Finding(rule, severity, message, evidence, source, refs=["figure", "settings", "baselines"])
    return Finding("sweep", "info", str(c), {}, source, refs=["figure", "settings", "baselines"])


def analyse_sweep(sw: Sweep) -> dict[str, Any]:
    rows = sw.rows
    psnr_key = "psnr_mean" if any(np.isfinite(number(r.get("psnr_mean"))) for r in rows) else "psnr_sample"
    scored = [r for r in rows if np.isfinite(number(r.get(psnr_key)))]
    images = [
        {"path": str(p), "name": p.name, "caption": SWEEP_IMAGES[p.name]}
        for p in (Path(sw.path) / n for n in SWEEP_IMAGES)
        if p.is_file()
    ]
    return {
        "kind": "sweep",
        "name": sw.name,
        "path": str(sw.path),
        "rows": rows,
        "columns": list(dict.fromkeys(k for r in rows for k in r)),
        "baselines": sw.baselines,
        "conclusions": sw.conclusions,
        "missing": list(sw.missing),
        "protocol": sw.protocol,
        "best": max(scored, key=lambda r: number(r[psnr_key])) if scored else None,
        "best_by": psnr_key,
        "images": images,
        "findings": [asdict(_conclusion(c, sw.name)) for c in sw.conclusions],
    }
