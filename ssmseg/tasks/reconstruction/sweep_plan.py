"""``ssmseg sweep-steps``'s grid and plan: which solver settings run, and what they will cost in model calls
(printed before the sweep starts, and completed once the first dopri5 reference solve has measured its pace)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ssmseg.config import Config
from ssmseg.eta import duration

INTERVAL = 0.9  # central interval of the calibration figure
LOOSE_REFERENCE = 1e-3  # the reference tolerance when no dopri5 row asks for a tighter one


FULL_GRID = {
    "solvers": ["euler", "midpoint", "heun", "rk4", "dopri5"],
    "steps": [1, 2, 4, 8, 16, 32, 50, 100, 200],
    "max_fields": 100,
}


@dataclass(frozen=True)
class Setting:
    solver: str
    steps: int | None  # None: dopri5, which picks its own steps

    @property
    def label(self) -> str:
        return self.solver if self.steps is None else f"{self.solver} {self.steps}"


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
    return (
        fallback[0] if sc.reference_atol is None else sc.reference_atol,
        fallback[1] if sc.reference_rtol is None else sc.reference_rtol,
    )


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
    text = (
        f"sweep plan: {len(grid)} settings ({', '.join(dict.fromkeys(sc.solvers))}; steps "
        f"{', '.join(map(str, fixed))}) on {n_fields} fields x K = {sc.samples}: {planned_calls(cfg, n_fields):,} "
        f"model calls of {min(sc.batch_size, n_fields)} fields for the fixed-step settings, plus a dopri5 "
        f"reference (tolerance {tol:g}; {solves} solve{'s' if solves > 1 else ''})"
        + (" and the dopri5 row" if "dopri5" in adaptive(cfg) else "")
        + " whose model calls the adaptive solver decides as it runs: measured on its first solve, the total "
        "is printed then"
    )
    if set(FULL_GRID["solvers"]) <= set(sc.solvers) and set(FULL_GRID["steps"]) <= set(fixed):
        return text + "; the full grid takes hours on CPU"
    return text + (
        "; more: --full (every solver at 1-200 steps on 100 fields: hours on CPU) or --set "
        "sweep.solvers=[...] --set sweep.steps=[...] --set sweep.max_fields=N"
    )


def reference_line(cfg: Config, n_fields: int, calls: int, seconds: float) -> str:
    """The plan completed once the first reference solve has measured what a dopri5 solve costs."""
    total = planned_calls(cfg, n_fields, calls)
    ref = planned_calls(cfg, n_fields, calls) - planned_calls(cfg, n_fields)
    per_call = seconds / max(calls, 1)
    return (
        f"dopri5 reference: {calls} model calls in its first solve ({seconds:.1f} s); the sweep plans about "
        f"{total:,} model calls ({ref:,} of them dopri5), about {duration(total * per_call)} of solving at "
        f"{1000 * per_call:.0f} ms per call"
    )


def stages(solver: str) -> int:
    """Model calls per step of a fixed-step solver."""
    return {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[solver]
