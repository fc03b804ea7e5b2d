"""The report's figures (matplotlib, Agg), drawn at the HTML page's width with readable fonts. Each returns
a record for report.json with the plotted data (so every figure is also machine-readable) and its ``role``,
which findings point at."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from ssmseg.report.rules import Curves
from ssmseg.report.runs import number
from ssmseg.report.series import smooth, smooth_window

DPI = 100
WIDTH = 11.0  # inches: 1100 px, the width of the HTML page's content
PANEL_HEIGHT = 3.6
FONT = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "figure.titlesize": 13,
}
STAGE_COLOURS = {
    "warmup": "#dddddd",
    "fast learning": "#cfe8ff",
    "steady climb": "#e3f5d8",
    "plateau": "#eeeeee",
    "peak": "#ffe9b8",
    "decline": "#f6d5d5",
}


def _grid(n: int, cols: int = 2, height: float = PANEL_HEIGHT) -> tuple[Any, list[Any]]:
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig: Any, out: Path, name: str, left: float = 0.9, tight: bool = False) -> str:
    """Save at DPI; margins fixed in inches (``left`` for long tick labels): tight_layout costs more than
    drawing a grid of panels, so only small figures (``tight``) use it."""
    with plt.rc_context(FONT):
        if tight:
            fig.tight_layout()
        else:
            w, h = fig.get_size_inches()
            top = 0.75 if fig._suptitle is not None else 0.45
            fig.subplots_adjust(
                left=left / w, right=1 - 0.25 / w, bottom=0.65 / h, top=1 - top / h, wspace=0.22, hspace=0.5
            )
        fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return f"plots/{name}"


def _record(name: str, file: str, title: str, caption: str, role: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": name.removesuffix(".png"),
        "file": file,
        "title": title,
        "caption": caption,
        "role": role,
        "data": data,
    }


def _series(x: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in x]


def _panels(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    first = [str(a.get("monitor") or "")[4:] for _, a in items if str(a.get("monitor") or "").startswith("val/")]
    metrics = [k[4:] for _, a in items for k in a["curves"].cols if k.startswith("val/")]
    panels = ["loss", *dict.fromkeys(m for m in first + metrics if m and m != "loss"), "lr"]
    if any("grad_norm_mean" in a["curves"].cols or "grad_norm_max" in a["curves"].cols for _, a in items):
        panels.append("gradient norm")
    return panels


def curves(out: Path, name: str, items: list[tuple[str, dict[str, Any]]], title: str) -> dict[str, Any]:
    """Loss, every metric, the LR (raw, log axis) and gradient norms against epoch for one or several runs:
    validation solid, train dashed, thin raw and thick smoothed (metrics and losses only), each run's best epoch
    marked, chance baselines as grey lines; the training stages shaded when there is one run."""
    panels = _panels(items)
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
        prefix = "" if single else f"{label} "
        for ax, panel in zip(axes, panels, strict=False):
            _draw_panel(ax, panel, cur, a, w, colour if not single else None, prefix)
    for ax, panel in zip(axes, panels, strict=False):
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.25)
        if panel == "lr":
            ys = np.concatenate([a["curves"].cols.get("lr", np.array([])) for _, a in items])
            ys = ys[np.isfinite(ys)]
            if len(ys) and ys.min() > 0:
                ax.set_yscale("log")
        if not single:
            _key_legend(ax, [label for label, _ in items])
        elif ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", framealpha=0.8)
    fig.suptitle(title)
    file = _save(fig, out, name)
    caption = (
        "validation solid, train dashed; thin lines raw, thick lines a centred moving mean (the LR and gradient "
        "norms are raw); dotted vertical line and star: the best epoch; grey dashed lines: chance baselines"
        + ("; shading: the training stages" if single else "")
    )
    return _record(name, file, title, caption, "curves", {"runs": data, "panels": panels})


def _key_legend(ax: Any, labels: list[str]) -> None:
    """Several runs on one panel: a legend of the runs' colours and of the line styles used on this panel (each
    line is one run in one style), instead of one entry per line."""
    from matplotlib.lines import Line2D

    runs = [Line2D([], [], color=f"C{r % 10}", lw=2, label=label) for r, label in enumerate(labels)]
    styles: dict[str, Line2D] = {}
    for line in ax.get_lines():
        word = next((line.get_label()[len(p) + 1 :] for p in labels if line.get_label().startswith(p + " ")), None)
        if word and word not in styles:
            styles[word] = Line2D(
                [], [], color="0.3", ls=line.get_linestyle(), marker=line.get_marker(), lw=1.5, label=word
            )
    if runs or styles:
        ax.legend(handles=runs + list(styles.values()), loc="best", framealpha=0.8, fontsize=8)


def _draw_panel(ax: Any, panel: str, cur: Curves, a: dict[str, Any], w: int, colour: str | None, prefix: str) -> None:
    if panel == "lr":
        keys = [("lr", "-", "LR", False)]
    elif panel == "gradient norm":
        keys = [("grad_norm_mean", "-", "epoch mean", False), ("grad_norm_max", ":", "epoch max", False)]
    else:
        keys = [(f"train/{panel}", "--", "train", True), (f"val/{panel}", "-", "validation", True)]
    for j, (key, style, word, smoothed) in enumerate(keys):
        y = cur.get(key)
        if y is None or not np.isfinite(y).any():
            continue
        c = colour or f"C{j}"
        if smoothed:
            ax.plot(cur.epoch, y, style, color=c, lw=0.8, alpha=0.35)
            ax.plot(cur.epoch, smooth(y, w), style, color=c, lw=1.8, label=f"{prefix}{word}")
        else:
            ax.plot(cur.epoch, y, style, color=c, lw=1.5, marker="." if len(y) < 40 else None, label=f"{prefix}{word}")
    best = a["summary"]["best_epoch"]
    if best is not None:
        ax.axvline(best, color=colour or "k", ls=":", lw=1, label=f"{prefix}best epoch")
    monitor = a.get("monitor") or ""
    if panel == "lr":
        for k, change in enumerate(a.get("schedule_changes", [])):
            e = number(change.get("epoch"))
            if math.isfinite(e):
                ax.axvline(e - 0.5, color="C3", ls="-.", lw=1.2, label="schedule change" if k == 0 else None)
    if panel in a.get("chance_lines", {}):
        ax.axhline(a["chance_lines"][panel], color="0.45", ls="--", lw=1.2, label=f"{prefix}chance")
    if panel == monitor.split("/", 1)[-1] or (panel == "loss" and monitor.endswith("/loss")):
        bv = number(a["summary"]["best_value"])
        if best is not None and math.isfinite(bv):
            ax.plot([best], [bv], "*", color=colour or "k", ms=12, zorder=5, label=f"{prefix}best")
        if not prefix:
            seen = []
            for st in a.get("stages", []):
                ax.axvspan(
                    st["first_epoch"] - 0.5, st["last_epoch"] + 0.5, color=STAGE_COLOURS[st["stage"]], zorder=0, lw=0
                )
                seen.append(st["stage"])
            handles, labels = ax.get_legend_handles_labels()
            stages = [Patch(color=STAGE_COLOURS[s], label=s) for s in dict.fromkeys(seen)]
            if stages:
                ax.legend(handles + stages, labels + [p.get_label() for p in stages], loc="best", framealpha=0.8)


def cv_folds(out: Path, name: str, cv: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out score per fold (bars, mean ± std band) and the validation value that selected each fold's
    epoch (dots)."""
    key = cv.get("headline")
    if key is None:
        return None
    folds = [(str(f.get("fold")), number(f.get(key))) for f in cv["folds"]]
    sel = cv.get("monitor") if cv.get("monitor") in cv["metrics"] and cv.get("monitor") != key else None
    fig, axes = _grid(1, height=4.0)
    ax = axes[0]
    ax.bar([f for f, _ in folds], [v for _, v in folds], color="C0", label=key)
    m, s = number(cv["mean"].get(key)), number(cv["std"].get(key))
    if math.isfinite(m):
        ax.axhline(m, color="k", lw=1, label=f"mean {key}")
        if math.isfinite(s):
            ax.axhspan(m - s, m + s, color="k", alpha=0.12, lw=0, label="± std")
    data: dict[str, Any] = {"metric": key, "folds": folds, "mean": m, "std": s}
    if sel:
        vals = [number(f.get(sel)) for f in cv["folds"]]
        ax.plot([f for f, _ in folds], vals, "o", color="C1", ms=8, label=f"{sel} (selected the epoch)")
        data["selected_by"] = {"metric": sel, "values": vals}
    ax.set_xlabel("fold")
    ax.set_title(f"{key} per fold")
    ax.legend(loc="lower right", framealpha=0.8)
    file = _save(fig, out, name)
    caption = "bars: each fold's score; line and band: mean ± std" + (
        f"; dots: {sel}, the validation value that chose each fold's epoch (optimistic)" if sel else ""
    )
    return _record(name, file, f"{cv['name']}: {key} per fold", caption, "fold_figure", data)


def sweep(out: Path, name: str, sw: dict[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in sw["rows"] if math.isfinite(number(r.get("nfe")))]
    if not rows:
        return None
    fig, axes = _grid(1, height=4.5)
    ax = axes[0]
    data: dict[str, Any] = {}
    for i, solver in enumerate(dict.fromkeys(str(r.get("solver")) for r in rows)):
        mine = sorted((r for r in rows if str(r.get("solver")) == solver), key=lambda r: number(r["nfe"]))
        nfe = [number(r["nfe"]) for r in mine]
        data[str(solver)] = {"nfe": nfe}
        for key, style in (("psnr_sample", "-o"), ("psnr_mean", "--s")):
            y = [number(r.get(key)) for r in mine]
            if any(math.isfinite(v) for v in y):
                ax.plot(nfe, y, style, color=f"C{i}", ms=5, lw=1.5, label=f"{solver} {key[5:]}")
                data[str(solver)][key] = y
    for j, b in enumerate(sw["baselines"]):
        if math.isfinite(number(b.get("psnr"))):
            ax.axhline(number(b["psnr"]), color="0.4", ls=[":", "-.", "--"][j % 3], lw=1.2, label=str(b.get("name")))
    if max(number(r["nfe"]) for r in rows) / max(min(number(r["nfe"]) for r in rows), 1e-9) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("NFE (function evaluations)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.25)
    ax.legend(loc="best", ncol=2, framealpha=0.8)
    file = _save(fig, out, name)
    caption = "solid: one sample, dashed: the mean of samples; grey lines: baselines"
    return _record(
        name,
        file,
        f"{sw['name']}: PSNR against NFE",
        caption,
        "figure",
        {"solvers": data, "baselines": sw["baselines"]},
    )


def eval_figure(out: Path, name: str, ev: dict[str, Any]) -> dict[str, Any] | None:
    """Metrics per observed fraction (reconstruction): PSNR per fraction. Per class (segmentation): IoU per class
    with the mIoU and its chance baselines."""
    if ev["layout"] == "per_fraction":
        rows = [r for r in ev["rows"] if math.isfinite(number(r.get("fraction")))]
        keys = [k for k in ev["columns"] if k.startswith("psnr")]
        if not rows or not keys:
            return None
        fig, axes = _grid(1, height=4.0)
        ax = axes[0]
        x = [number(r["fraction"]) for r in rows]
        for k in keys:
            ax.plot(x, [number(r.get(k)) for r in rows], "-o", ms=5, label=k)
        ax.set_xlabel("observed fraction")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.25)
        ax.legend(loc="best")
        data = {"fraction": x, **{k: [number(r.get(k)) for r in rows] for k in keys}}
        file = _save(fig, out, name)
        return _record(
            name,
            file,
            f"{ev['name']}: PSNR per observed fraction",
            "one line per PSNR column of metrics.json",
            "per_fraction_figure",
            data,
        )
    rows = ev["rows"]
    if not rows:
        return None
    names, iou = [r["class"] for r in rows], [number(r["iou"]) for r in rows]
    fig, axes = _grid(1, height=max(3.0, 0.35 * len(names) + 1.2))
    ax = axes[0]
    ax.barh(names[::-1], [v if math.isfinite(v) else 0 for v in iou[::-1]], color="C0", label="IoU")
    miou = ev["headline"]["miou"]
    if math.isfinite(miou):
        ax.axvline(miou, color="k", lw=1.2, label="mIoU")
    chance = ev.get("chance", {}).get("miou", {})
    for key, style in (("majority_class", ":"), ("class_prior_draw", "--")):
        if math.isfinite(number(chance.get(key))):
            ax.axvline(number(chance[key]), color="C3", ls=style, lw=1.2, label=f"chance mIoU ({key})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.legend(loc="lower right", framealpha=0.8)
    file = _save(fig, out, name, left=0.3 + 0.09 * max(len(str(c)) for c in names))
    return _record(
        name,
        file,
        f"{ev['name']}: IoU per class",
        "black line: mIoU; red lines: chance mIoU",
        "per_class_figure",
        {"class": names, "iou": iou, "miou": miou},
    )


def confusion(out: Path, name: str, ev: dict[str, Any]) -> dict[str, Any] | None:
    """The confusion matrix normalised per true class (recall), with class names and pixel counts."""
    cm = ev.get("confusion")
    if not cm:
        return None
    counts = np.array(cm["counts"], dtype=np.float64)
    classes = cm["classes"]
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(classes)
    side = min(WIDTH * 0.6, max(4.0, 0.75 * n + 2.0))
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=9 if n <= 10 else 7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title("confusion matrix, normalised per true class")
    file = _save(fig, out, name, tight=True)
    return _record(
        name,
        file,
        f"{ev['name']}: confusion matrix",
        "each row sums to 1: the share of a true class's pixels given to each predicted class",
        "confusion",
        {"classes": classes, "normalised": norm.tolist()},
    )


def copy_image(out: Path, name: str, image: dict[str, str], owner: str) -> dict[str, Any] | None:
    """An image an ssmseg command wrote (eval's prediction panels, a sweep's examples), copied in as it is."""
    try:
        shutil.copyfile(image["path"], out / name)
    except OSError:
        return None
    title = f"{owner}: {image['name']}"
    return _record(
        name,
        f"plots/{name}",
        title,
        f"{image['caption']} (drawn by the command, {image['path']})",
        "image",
        {"source": image["path"]},
    )
