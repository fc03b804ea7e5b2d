"""``ssmseg sweep-steps``'s conclusions: sentences computed from the numbers only (no claim the numbers do not
carry): the best setting, what more steps did per solver, when the solver error stops mattering, the
sample-versus-mean gap against theory, calibration, and the model against the baselines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ssmseg.tasks.reconstruction.sweep_plan import INTERVAL

SOLVER_ERROR_SHARE = 0.1  # "the solver no longer matters": its error under this share of the error to the truth
FLAT_DB = 0.1  # PSNR changes smaller than this count as no change


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
    out.append(
        f"best setting: {_label(best)}, PSNR {best['psnr_mean']:.2f} dB for the mean of {k} samples "
        f"({best['psnr_sample']:.2f} dB for one); best for one sample: {_label(best_one)}, "
        f"{best_one['psnr_sample']:.2f} dB"
    )
    for solver in dict.fromkeys(r["solver"] for r in scored if r.get("steps") is not None):
        mine = sorted((r for r in scored if r["solver"] == solver), key=lambda r: r["steps"])
        if len(mine) < 2:
            continue
        first, last = mine[0], mine[-1]
        d1, dk = last["psnr_sample"] - first["psnr_sample"], last["psnr_mean"] - first["psnr_mean"]
        line = (
            f"{solver}: more steps {_verdict(d1, dk, k)}: one sample {first['psnr_sample']:.2f} -> "
            f"{last['psnr_sample']:.2f} dB ({d1:+.2f}) from {first['steps']} to {last['steps']} steps, mean of {k} "
            f"{first['psnr_mean']:.2f} -> {last['psnr_mean']:.2f} dB ({dk:+.2f})"
        )
        peak = max(mine, key=lambda r: r["psnr_sample"])
        if peak["psnr_sample"] > max(first["psnr_sample"], last["psnr_sample"]) + FLAT_DB:
            line += f"; one-sample PSNR peaks at {peak['steps']} steps ({peak['psnr_sample']:.2f} dB)"
        under = [r["solver_error"] <= SOLVER_ERROR_SHARE * r["rmse_sample"] for r in mine]
        settled = next((r for i, r in enumerate(mine) if all(under[i:])), None)  # and stays under
        if settled is not None:
            line += (
                f"; from {settled['steps']} step{'s' if settled['steps'] != 1 else ''} on, the solver error "
                f"({settled['solver_error']:.3g}) is under "
                f"{SOLVER_ERROR_SHARE:.0%} of the error to the truth ({settled['rmse_sample']:.3g})"
            )
        else:
            line += (
                f"; even at {last['steps']} steps the solver error ({last['solver_error']:.3g}) is "
                f"{last['solver_error'] / max(last['rmse_sample'], 1e-30):.0%} of the error to the truth"
            )
        out.append(line)
    accurate = min(scored, key=lambda r: (r["solver_error"], -float(r["nfe"])))
    gaps = [r["psnr_mean"] - r["psnr_sample"] for r in scored]
    theory = 10 * math.log10(2 / (1 + 1 / k))
    out.append(
        f"sample-versus-mean gap: {accurate['psnr_mean'] - accurate['psnr_sample']:.2f} dB at the most accurate "
        f"solve ({_label(accurate)}), median {float(np.median(gaps)):.2f} dB over all settings; exact posterior "
        f"samples give {theory:.2f} dB for the mean of {k} (3.01 dB for the posterior mean)"
    )
    one_step = next((r for r in scored if r["solver"] == "euler" and r.get("steps") == 1), None)
    if one_step is not None and one_step is not accurate:
        out.append(
            f"one Euler step (a posterior-mean estimate): {one_step['psnr_sample']:.2f} dB, against "
            f"{accurate['psnr_mean']:.2f} dB for the mean of {k} accurate samples and "
            f"{accurate['psnr_sample']:.2f} dB for one"
        )
    if k > 1 and isinstance(accurate.get("coverage90"), float) and math.isfinite(accurate["coverage90"]):
        cov, want = accurate["coverage90"], expected_coverage(k)
        word = "too narrow" if cov < want - 0.05 else "too wide" if cov > want + 0.05 else "about right"
        out.append(
            f"calibration: {cov:.1%} of unobserved true values lie inside the {k} samples' central 90% interval "
            f"({_label(accurate)}); exact samples of a Gaussian posterior give {want:.1%} at K = {k}: the "
            f"spread is {word}"
        )
    base = _finite(baselines, "psnr")
    if base:
        top = max(base, key=lambda b: b["psnr"])
        d, d1 = best["psnr_mean"] - top["psnr"], best_one["psnr_sample"] - top["psnr"]
        out.append(
            f"best baseline: {top['name']} {top['psnr']:.2f} dB; the best mean of {k} is {_against(d)}, "
            f"the best single sample {_against(d1)}"
        )
        low = min(base, key=lambda b: b["psnr"])
        if best["psnr_mean"] < low["psnr"] and best_one["psnr_sample"] < low["psnr"]:
            out.append(
                f"the model is below every baseline, {low['name']} included ({low['psnr']:.2f} dB): its best "
                f"mean of {k} is {_against(best['psnr_mean'] - low['psnr'])}"
            )
        else:
            mean_fill = next((b for b in base if b["name"] == "mean"), None)
            if mean_fill is not None and best["psnr_mean"] < mean_fill["psnr"]:
                out.append(
                    f"the model's best mean of {k} is below filling with the mean ({mean_fill['psnr']:.2f} "
                    f"dB): {_against(best['psnr_mean'] - mean_fill['psnr'])}"
                )
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
