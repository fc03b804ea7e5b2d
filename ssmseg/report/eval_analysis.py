"""An evaluation folder (metrics.json and the images eval wrote under vis/): headline metrics beside their
chance baselines on the same pixels, per-class scores, the confusion matrix, the weakest classes."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from ssmseg.report.chance import CHANCE_METRICS
from ssmseg.report.rules import THRESHOLDS, Finding
from ssmseg.report.runs import Eval, number
from ssmseg.report.series import fmt

PANEL_WORDS = {"examples.png": "observed points, truth, one sample, mean of K, spread and error, per field"}


def eval_images(ev: Eval) -> list[dict[str, str]]:
    """The PNGs eval wrote under vis/ (prediction panels, examples), without the confusion matrix (the report
    draws its own, normalised, from metrics.json)."""
    vis = ev.path / "vis"
    if not vis.is_dir():
        return []
    found = sorted(p for p in vis.glob("*.png") if p.is_file() and p.name != "confusion.png")
    return [{"path": str(p), "name": p.name, "caption": PANEL_WORDS.get(p.name, "a panel eval wrote")} for p in found]


def analyse_eval(ev: Eval) -> dict[str, Any]:
    m = ev.metrics
    out: dict[str, Any] = {
        "kind": "eval",
        "name": ev.name,
        "path": str(ev.path),
        "task": ev.task,
        "layout": ev.layout,
        "missing": list(ev.missing),
        "findings": [],
        "images": eval_images(ev),
    }
    if ev.layout == "per_fraction":
        fractions = m.get("per_fraction") if isinstance(m.get("per_fraction"), list) else []
        rows = [r for r in fractions if isinstance(r, dict)]
        out["columns"] = list(dict.fromkeys(k for r in rows for k in r))
        out["rows"] = rows
        out["protocol"] = m.get("protocol") if isinstance(m.get("protocol"), dict) else {}
        if not out["images"]:
            out["missing"].append(
                "eval wrote no example image (vis/examples.png: observed points, truth, mean, one sample, error)"
            )
        return out
    out["headline"] = {k: number(m.get(k)) for k in CHANCE_METRICS}
    per_class = m.get("per_class") if isinstance(m.get("per_class"), dict) else {}
    names = list(per_class)
    fields = ("iou", "precision", "recall", "f1", "support")
    rows = [
        {"class": k, **{f: number(v.get(f)) if isinstance(v, dict) else math.nan for f in fields}}
        for k, v in per_class.items()
    ]
    out["rows"] = rows
    cm = np.asarray(m.get("confusion_matrix") or [], dtype=object)
    has_cm = cm.ndim == 2 and cm.shape == (len(names), len(names)) and len(names) > 0
    out["confusion"] = {"classes": names, "counts": [[number(x) for x in row] for row in cm]} if has_cm else None
    if not has_cm:
        out["missing"].append("metrics.json has no confusion matrix matching its classes: none is drawn")
    present = [r for r in rows if np.isfinite(r["iou"])]
    absent = [r["class"] for r in rows if not np.isfinite(r["iou"])]
    if absent:
        out["missing"].append(f"no IoU for {', '.join(absent)}: absent from the evaluated pixels and predictions")
    weakest = sorted(present, key=lambda r: r["iou"])[: min(3, len(present))]
    for r in weakest:
        if has_cm:
            i = names.index(r["class"])
            row = np.array([number(x) for x in cm[i]])
            row[i] = -1
            j = int(np.nanargmax(row)) if row.max() > 0 else None
            r["confused_with"] = names[j] if j is not None else None
            r["confused_share"] = float(row[j] / r["support"]) if j is not None and r["support"] > 0 else math.nan
    out["weakest"] = weakest
    findings = []
    miou = out["headline"]["miou"]
    share = THRESHOLDS["weak_class_share"]
    weak = [r for r in present if np.isfinite(miou) and r["iou"] < share * miou]
    if weak:
        parts = [
            f"{r['class']} {fmt(r['iou'])}"
            + (f" (mostly taken for {r['confused_with']})" if r.get("confused_with") else "")
            for r in sorted(weak, key=lambda r: r["iou"])
        ]
        findings.append(
            Finding(
                "weak_classes",
                "warning",
                f"{len(weak)} class(es) with IoU below {share:.0%} of the mIoU {fmt(miou)}: {'; '.join(parts)}: "
                "check their labels and support, or weight them in the loss (loss.class_weights).",
                {"miou": miou, "share": share, "classes": {r["class"]: r["iou"] for r in weak}},
                ev.name,
                refs=["per_class", "confusion", "weakest"],
            )
        )
    chance = m.get("chance") if isinstance(m.get("chance"), dict) else {}
    maj = chance.get("majority_class") if isinstance(chance.get("majority_class"), dict) else {}
    drawn = chance.get("class_prior_draw") if isinstance(chance.get("class_prior_draw"), dict) else {}
    out["chance"] = {
        k: {"value": out["headline"][k], "majority_class": number(maj.get(k)), "class_prior_draw": number(drawn.get(k))}
        for k in CHANCE_METRICS
    }
    out["chance_majority_class"] = maj.get("class")
    for k, row in out["chance"].items():
        base = np.nanmax([row["majority_class"], row["class_prior_draw"], -np.inf])
        if np.isfinite(row["value"]) and np.isfinite(base) and row["value"] <= base + THRESHOLDS["chance_margin"]:
            findings.append(
                Finding(
                    "at_chance",
                    "warning",
                    f"{k} {fmt(row['value'])} is at or below its chance baseline on the same pixels: majority class "
                    f"('{maj.get('class')}') {fmt(row['majority_class'])}, class-prior draw "
                    f"{fmt(row['class_prior_draw'])}.",
                    {"metric": k, **row, "margin": THRESHOLDS["chance_margin"]},
                    ev.name,
                    refs=["metrics"],
                )
            )
    out["findings"] = [asdict(f) for f in findings]
    return out
