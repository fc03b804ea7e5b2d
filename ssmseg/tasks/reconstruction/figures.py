"""Figures written by ``ssmseg sweep-steps`` (matplotlib, Agg): PSNR and solver error against NFE, and a
panel of example fields."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def sweep_plot(path: Path, rows: list[dict[str, Any]], baselines: list[dict[str, Any]], k: int) -> None:
    """Three panels against NFE (log scale): PSNR of one sample, PSNR of the mean of K (baselines as
    horizontal lines in both), and the solver error against the dopri5 reference."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    panels = (
        ("psnr_sample", "one sample: PSNR (dB)"),
        ("psnr_mean", f"mean of {k} samples: PSNR (dB)"),
        ("solver_error", "solver error: RMS distance to the reference"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, solver in enumerate(solvers):
            mine = sorted((r for r in rows if r["solver"] == solver and _finite(r.get(key))), key=lambda r: r["nfe"])
            if key == "solver_error":  # the reference itself (error 0) has no place on a log axis
                mine = [r for r in mine if r[key] > 0]
            if not mine:
                continue
            x, y = [r["nfe"] for r in mine], [r[key] for r in mine]
            style = "*" if len(mine) == 1 else "-o"
            ax.plot(x, y, style, color=f"C{i}", ms=8 if len(mine) == 1 else 3, lw=1.2, label=solver)
        if key != "solver_error":
            shown = sorted((x for x in baselines if _finite(x.get("psnr"))), key=lambda b: b["psnr"])
            for b in shown:
                ax.axhline(b["psnr"], color="0.55", ls="--", lw=0.8)
            lo, hi = ax.get_ylim()
            for b, y in zip(shown, label_positions([b["psnr"] for b in shown], 0.045 * (hi - lo)), strict=True):
                ax.annotate(
                    b["name"],
                    (1.0, y),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="0.35",
                )
        else:
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("NFE (model calls per sample)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="best")
    fig.text(
        0.01,
        0.01,
        "dashed grey lines: baselines (named at the right); dopri5 (a star) is also the reference "
        "of the solver error when its tolerances are the reference's",
        fontsize=7,
        color="0.35",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1), w_pad=3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def label_positions(values: list[float], gap: float) -> list[float]:
    """Heights for labels of ascending ``values``: each at its value where possible, pushed apart to at least
    ``gap`` (and centred on the group it forms), so labels of close lines never overlap."""
    groups: list[list[float]] = []  # each: [first label's height, count, sum of values]
    for v in values:
        groups.append([v, 1, v])
        while len(groups) > 1 and groups[-2][0] + groups[-2][1] * gap > groups[-1][0]:
            top = groups.pop()
            g = groups[-1]
            g[1], g[2] = g[1] + top[1], g[2] + top[2]
            g[0] = g[2] / g[1] - (g[1] - 1) * gap / 2
    return [g[0] + i * gap for g in groups for i in range(int(g[1]))]


def _pick_steps(steps: list[int], n: int = 3) -> list[int]:
    """A few step counts spread over the grid: the fewest, the most, and ones between (log-spaced)."""
    if len(steps) <= n:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in idx]


def examples_panel(
    path: Path,
    rows: list[dict[str, Any]],
    baselines: list[dict[str, Any]],
    examples: dict[str, Any],
    baseline_preds: dict[str, Any],
    k: int,
) -> list[str]:
    """One row per example field (channel 0): observed points, truth, one sample of each solver at a few
    step counts (dopri5 once; the best settings by the mean of K and by one sample always among
    them), the mean and per-pixel spread of K samples at the most accurate solve (the
    lowest solver error: the model's own samples), and the best baseline (by PSNR). Returns the column titles."""
    plt = _plt()
    settings = examples["settings"]
    truth, observed = examples["truth"][:, 0].numpy(), examples["observed"][:, 0].numpy()
    by_label = {(r["solver"], r["steps"]): r for r in rows}
    shown = []
    for solver in dict.fromkeys(s.solver for s in settings):
        mine = [s for s in settings if s.solver == solver]
        keep = _pick_steps([s.steps for s in mine]) if mine[0].steps is not None else [None]
        shown += [s for s in mine if s.steps in keep]
    finite = [r for r in rows if _finite(r.get("psnr_mean"))]
    for key in ("psnr_mean", "psnr_sample"):  # the best settings are always shown
        top = max(finite, key=lambda r: r[key], default=None)
        pick = next(
            (s for s in settings if top is not None and (s.solver, s.steps) == (top["solver"], top["steps"])), None
        )
        if pick is not None and pick not in shown:
            shown.append(pick)
    scored = [r for r in rows if _finite(r.get("solver_error"))]
    best = min(scored, key=lambda r: (r["solver_error"], -float(r["nfe"]))) if scored else rows[-1]
    best_setting = next(s for s in settings if (s.solver, s.steps) == (best["solver"], best["steps"]))
    base = max((b for b in baselines if _finite(b.get("psnr"))), key=lambda b: b["psnr"], default=None)
    cols: list[tuple[str, Any, str]] = [("observed", None, "obs"), ("truth", truth, "field")]
    for s in shown:
        r = by_label[(s.solver, s.steps)]
        cols.append((f"{s.label} ({r['nfe']} NFE)\none sample", settings[s]["sample"][:, 0].numpy(), "field"))
    cols.append((f"mean of {k}\n{best_setting.label}", settings[best_setting]["mean"][:, 0].numpy(), "field"))
    cols.append((f"spread (std) of {k}\n{best_setting.label}", settings[best_setting]["std"][:, 0].numpy(), "std"))
    if base is not None:
        cols.append((f"{base['name']}\n(best baseline)", baseline_preds[base["name"]][:, 0].numpy(), "field"))
    n = len(truth)
    fig, axes = plt.subplots(n, len(cols), figsize=(1.6 * len(cols), 1.75 * n + 0.3), squeeze=False)
    for i in range(n):
        lo, hi = float(truth[i].min()), float(truth[i].max())
        for j, (title, img, kind) in enumerate(cols):
            ax = axes[i, j]
            if kind == "obs":
                ax.imshow(
                    np.where(observed[i], truth[i], np.nan), vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest"
                )
                ax.set_facecolor("0.85")
            elif kind == "std":  # black is 0; at least 5% of the field's range is bright (no noise blown up)
                ax.imshow(
                    img[i],
                    cmap="magma",
                    vmin=0,
                    vmax=max(float(img[i].max()), 0.05 * (hi - lo), 1e-12),
                    interpolation="nearest",
                )
            else:
                ax.imshow(img[i], vmin=lo, vmax=hi, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [title for title, _, _ in cols]
