"""The report's figures: few, small PNGs (matplotlib, Agg). Each returns a record for report.json with the
plotted data, so every figure is also machine-readable."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ssmseg.report.analysis import Curves, smooth, smooth_window
from ssmseg.report.runs import number

DPI = 80
PANEL = (3.1, 2.3)  # inches per panel
STAGE_COLOURS = {
    "warmup": "#dddddd",
    "fast learning": "#cfe8ff",
    "steady climb": "#e3f5d8",
    "peak": "#ffe9b8",
    "late stage": "#f6d5d5",
}


def _grid(n: int, cols: int = 4) -> tuple[Any, list[Any]]:
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig: Any, out: Path, name: str) -> str:
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if len(axes) == 1:
        fig.tight_layout()
    else:  # fixed margins in inches: tight_layout costs more than drawing a grid of panels
        w, h = fig.get_size_inches()
        fig.subplots_adjust(
            left=0.5 / w, right=1 - 0.15 / w, bottom=0.45 / h, top=1 - 0.55 / h, wspace=0.3, hspace=0.55
        )
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return f"plots/{name}"


def _series(x: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in x]


def curves(out: Path, name: str, items: list[tuple[str, dict[str, Any]]], title: str) -> dict[str, Any]:
    """Loss, every metric, LR (and gradient norms) against epoch for one or several runs (overlaid):
    validation solid, train dashed, raw thin, smoothed thick, each run's best epoch marked; the
    training stages shaded when there is one run."""
    first = [str(a.get("monitor") or "")[4:] for _, a in items if str(a.get("monitor") or "").startswith("val/")]
    metrics = list(
        dict.fromkeys(
            m
            for m in first + [k[4:] for _, a in items for k in a["curves"].cols if k.startswith("val/")]
            if m and m != "loss"
        )
    )
    panels = ["loss", *metrics, "lr"]
    if any("grad_norm_mean" in a["curves"].cols for _, a in items):
        panels.append("gradient norm")
    fig, axes = _grid(len(panels))
    single = len(items) == 1
    data: dict[str, Any] = {}
    for r, (label, a) in enumerate(items):
        cur: Curves = a["curves"]
        w = smooth_window(len(cur.epoch))
        colour = f"C{r % 10}"
        data[label] = {
            "epoch": _series(cur.epoch),
            "smoothing_window": w,
            "best_epoch": a["summary"]["best_epoch"],
            **{k: _series(v) for k, v in cur.cols.items()},
        }
        for ax, panel in zip(axes, panels, strict=False):
            if panel == "lr":
                keys = [("lr", "-")]
            elif panel == "gradient norm":
                keys = [("grad_norm_mean", "-"), ("grad_norm_max", ":")]
            else:
                keys = [(f"train/{panel}", "--"), (f"val/{panel}", "-")]
            for j, (key, style) in enumerate(keys):
                y = cur.get(key)
                if y is None:
                    continue
                c = (f"C{j}" if single else colour) if panel != "lr" else colour
                split = key.split("/")[0] if "/" in key else key
                ax.plot(cur.epoch, y, style, color=c, lw=0.7, alpha=0.35)
                ax.plot(
                    cur.epoch, smooth(y, w), style, color=c, lw=1.5, label=f"{label} {split}" if not single else split
                )
            best = a["summary"]["best_epoch"]
            if best is not None:
                ax.axvline(best, color=colour, ls=":", lw=1)
            monitor = a.get("monitor") or ""
            if panel == monitor.split("/", 1)[-1] or (panel == "loss" and monitor.endswith("/loss")):
                bv = number(a["summary"]["best_value"])
                if best is not None and math.isfinite(bv):
                    ax.plot([best], [bv], "*", color=colour, ms=10, zorder=5)
                if single:
                    for st in a.get("stages", []):
                        ax.axvspan(
                            st["first_epoch"] - 0.5,
                            st["last_epoch"] + 0.5,
                            color=STAGE_COLOURS[st["stage"]],
                            zorder=0,
                            lw=0,
                        )
    for ax, panel in zip(axes, panels, strict=False):
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if panel == "lr":
            ys = np.concatenate([a["curves"].cols.get("lr", np.array([])) for _, a in items])
            ys = ys[np.isfinite(ys)]
            if len(ys) and ys.min() > 0 and ys.max() / ys.min() > 20:
                ax.set_yscale("log")
    for ax in axes[: len(panels)]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
            break
    fig.suptitle(title, fontsize=10)
    file = _save(fig, out, name)
    caption = (
        "validation solid, train dashed; thin lines raw, thick lines a centred moving mean; dotted "
        "vertical line and star: the best epoch" + ("; shading: the training stages" if single else "")
    )
    return {
        "id": name.removesuffix(".png"),
        "file": file,
        "title": title,
        "caption": caption,
        "data": {"runs": data, "panels": panels},
    }


def cv_folds(out: Path, name: str, cv: dict[str, Any]) -> dict[str, Any] | None:
    shown = [k for k in (cv.get("headline"), cv["monitor"]) if k in cv["metrics"]]  # the held-out score first
    key = shown[0] if shown else (cv["metrics"][0] if cv["metrics"] else None)
    if key is None:
        return None
    folds = [(str(f.get("fold")), number(f.get(key))) for f in cv["folds"]]
    fig, axes = _grid(1)
    ax = axes[0]
    ax.bar([f for f, _ in folds], [v for _, v in folds], color="C0")
    m, s = number(cv["mean"].get(key)), number(cv["std"].get(key))
    if math.isfinite(m):
        ax.axhline(m, color="k", lw=1)
        if math.isfinite(s):
            ax.axhspan(m - s, m + s, color="k", alpha=0.12, lw=0)
    ax.set_xlabel("fold", fontsize=8)
    ax.set_title(f"{key} per fold (mean ± std)", fontsize=9)
    ax.tick_params(labelsize=7)
    file = _save(fig, out, name)
    return {
        "id": name.removesuffix(".png"),
        "file": file,
        "title": f"{cv['name']}: {key} per fold",
        "caption": "bars: folds; line and band: mean ± std",
        "data": {"metric": key, "folds": folds, "mean": m, "std": s},
    }


def sweep(out: Path, name: str, sw: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in sw["rows"] if math.isfinite(number(r.get("nfe")))]
    if not rows:
        return None
    fig, axes = _grid(1)
    ax = axes[0]
    data: dict[str, Any] = {}
    for i, solver in enumerate(dict.fromkeys(str(r.get("solver")) for r in rows)):
        mine = sorted((r for r in rows if str(r.get("solver")) == solver), key=lambda r: number(r["nfe"]))
        nfe = [number(r["nfe"]) for r in mine]
        data[str(solver)] = {"nfe": nfe}
        for key, style in (("psnr_sample", "-o"), ("psnr_mean", "--s")):
            y = [number(r.get(key)) for r in mine]
            if any(math.isfinite(v) for v in y):
                ax.plot(nfe, y, style, color=f"C{i}", ms=3, lw=1.2, label=f"{solver} {key[5:]}")
                data[str(solver)][key] = y
    for j, b in enumerate(sw["baselines"]):
        if math.isfinite(number(b.get("psnr"))):
            ax.axhline(number(b["psnr"]), color="0.4", ls=[":", "-.", "--"][j % 3], lw=1, label=str(b.get("name")))
    if max(number(r["nfe"]) for r in rows) / max(min(number(r["nfe"]) for r in rows), 1e-9) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("NFE (function evaluations)", fontsize=8)
    ax.set_ylabel("PSNR (dB)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    fig.set_size_inches(PANEL[0] * 1.6, PANEL[1] * 1.4)
    file = _save(fig, out, name)
    return {
        "id": name.removesuffix(".png"),
        "file": file,
        "title": f"{sw['name']}: PSNR against NFE",
        "caption": "solid: one sample, dashed: the mean of samples; grey lines: baselines",
        "data": {"solvers": data, "baselines": sw["baselines"]},
    }


def eval_figure(out: Path, name: str, ev: dict[str, Any]) -> dict[str, Any] | None:
    fig, axes = _grid(1)
    ax = axes[0]
    if ev["task"] == "reconstruction":
        rows = [r for r in ev["rows"] if math.isfinite(number(r.get("fraction")))]
        keys = [k for k in ev["columns"] if k.startswith("psnr")]
        if not rows or not keys:
            plt.close(fig)
            return None
        x = [number(r["fraction"]) for r in rows]
        for k in keys:
            ax.plot(x, [number(r.get(k)) for r in rows], "-o", ms=3, label=k)
        ax.set_xlabel("observed fraction", fontsize=8)
        ax.set_ylabel("PSNR (dB)", fontsize=8)
        ax.legend(fontsize=6)
        data = {"fraction": x, **{k: [number(r.get(k)) for r in rows] for k in keys}}
        title, caption = f"{ev['name']}: PSNR per observed fraction", "one line per PSNR column of metrics.json"
    else:
        rows = ev["rows"]
        if not rows:
            plt.close(fig)
            return None
        names, iou = [r["class"] for r in rows], [number(r["iou"]) for r in rows]
        ax.barh(names[::-1], [v if math.isfinite(v) else 0 for v in iou[::-1]], color="C0")
        miou = ev["headline"]["miou"]
        if math.isfinite(miou):
            ax.axvline(miou, color="k", lw=1, label="mIoU")
        chance = ev.get("chance", {}).get("miou", {})
        for key, style in (("majority_class", ":"), ("class_prior_draw", "--")):
            if math.isfinite(number(chance.get(key))):
                ax.axvline(number(chance[key]), color="C3", ls=style, lw=1, label=f"chance mIoU ({key})")
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU", fontsize=8)
        ax.legend(fontsize=6)
        fig.set_size_inches(PANEL[0] * 1.5, max(PANEL[1], 0.22 * len(names) + 1))
        data = {"class": names, "iou": iou, "miou": miou}
        title, caption = f"{ev['name']}: IoU per class", "black line: mIoU; red lines: chance mIoU"
    ax.tick_params(labelsize=7)
    file = _save(fig, out, name)
    return {"id": name.removesuffix(".png"), "file": file, "title": title, "caption": caption, "data": data}
