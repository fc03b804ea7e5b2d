"""Render the analysed report with jinja2 templates: report.md, a self-contained report.html (figures
embedded as data URIs) and report.json (every number, figure and finding, machine-readable).

The templates only lay out sections, tables, figures and findings; the words come from the analysis.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ssmseg.report.analysis import RULES, THRESHOLDS, clean, fmt
from ssmseg.report.runs import number


def render(report: dict[str, Any], out: Path) -> None:
    env = Environment(
        loader=PackageLoader("ssmseg.report", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    figures = {f["id"]: f for f in report["figures"]}
    for f in figures.values():
        f["uri"] = "data:image/png;base64," + base64.b64encode((out / f["file"]).read_bytes()).decode("ascii")
    ctx = {
        "title": "ssmseg report",
        "inputs": report["inputs"],
        "vs": report["vs"],
        "sections": sections(report, figures),
        "findings": report["findings"],
        "missing": report["missing"],
        "thresholds": THRESHOLDS,
        "evidence": evidence,
        "rules": [{"name": n, "trigger": t} for n, t in RULES],
    }
    env.filters["md"] = md
    (out / "report.md").write_text(env.get_template("report.md.j2").render(**ctx), encoding="utf-8")
    (out / "report.html").write_text(env.get_template("report.html.j2").render(**ctx), encoding="utf-8")
    data = {k: v for k, v in report.items() if k not in ("order",)}
    data["rules"] = dict(RULES)
    data["figures"] = [{k: v for k, v in f.items() if k != "uri"} for f in report["figures"]]
    for group in ("runs", "cvs"):
        data[group] = [_strip(a) for a in data[group]]
    (out / "report.json").write_text(json.dumps(clean(data), indent=1, allow_nan=False), encoding="utf-8")


def md(value: Any) -> str:
    """A markdown table cell or list item: pipes escaped, one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _strip(a: dict[str, Any]) -> dict[str, Any]:
    """An analysis without its in-memory curves (their values are in the figure records)."""
    out = {k: v for k, v in a.items() if k != "curves"}
    if "fold_runs" in out:
        out["fold_runs"] = [_strip(f) for f in out["fold_runs"]]
    return out


def evidence(ev: dict[str, Any]) -> str:
    """Evidence as compact JSON with numbers to 4 significant digits."""

    def short(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [short(x) for x in v[:12]] + (["…"] if len(v) > 12 else [])
        if isinstance(v, float):
            return float(f"{v:.4g}") if math.isfinite(v) else None
        return v

    return json.dumps(clean(short(ev)), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- sections


def table(columns: list[str], rows: list[list[Any]], title: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "columns": columns,
        "rows": [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows],
    }


def section(title: str, anchor: str, **parts: Any) -> dict[str, Any]:
    return {
        "title": title,
        "anchor": anchor,
        "tables": [],
        "figures": [],
        "findings": [],
        "notes": [],
        "subsections": [],
        "lines": [],
        **parts,
    }


def _figs(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [figures[i] for i in a.get("figures", []) if i in figures]


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p.lower()) for p in parts)


def sections(report: dict[str, Any], figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group, i in report["order"]:
        a = report[group][i]
        out.append(
            {"runs": run_section, "cvs": cv_section, "evals": eval_section, "sweeps": sweep_section}[group](a, figures)
        )
    overlay = [figures[i] for i in report["overlay_figures"] if i in figures]
    if overlay:
        out.append(section("Runs overlaid", "overlay", figures=overlay))
    for c in report["comparisons"]:
        out.append(compare_section(c))
    return out


def summary_rows(a: dict[str, Any]) -> list[list[Any]]:
    s, monitor = a["summary"], a["monitor"] or "monitor"
    metric = monitor.split("/", 1)[-1]
    b = s.get("best_epoch")
    planned = f" of {s['epochs_planned']} planned" if s.get("epochs_planned") else ""
    secs = number(s.get("wall_seconds"))
    parts = [
        f"{p} {_duration(number(s.get(k)))}"
        for p, k in (("train", "train_seconds"), ("validation", "val_seconds"))
        if math.isfinite(number(s.get(k)))
    ]
    rows = [
        [
            f"best {monitor} ({s.get('mode') or 'mode missing'})",
            f"{fmt(s['best_value'])} at epoch {b}" if b else "missing",
        ],
        [f"train/{metric} at the best epoch", fmt(s.get("train_at_best"))],
        ["train − validation at the best epoch", fmt(s.get("gap_at_best"))],
        ["LR at the best epoch", fmt(s.get("lr_at_best"), 3)],
        [f"last {monitor}", fmt(s.get("final_value"))],
        ["epochs trained", f"{s.get('epochs_trained')}{planned}"],
        ["why training stopped", s.get("stop_reason") or "missing (no stop_reason)"],
        ["wall time", f"{_duration(secs)} ({', '.join(parts)})" if math.isfinite(secs) else "missing"],
        ["samples/s (median epoch)", fmt(s.get("samples_per_s"))],
        ["peak memory (MB)", fmt(s.get("peak_memory_mb"))],
        ["parameters", f"{s['parameters']:,}" if isinstance(s.get("parameters"), int) else fmt(s.get("parameters"))],
        ["model", fmt(s.get("model"))],
        ["scan backend / device", f"{fmt(s.get('scan_backend'))} / {fmt(s.get('device'))}"],
        ["precision / processes", f"{fmt(s.get('precision'))} / {fmt(s.get('world_size'))}"],
        ["schedule / warmup epochs", f"{fmt(s.get('schedule'))} / {fmt(s.get('warmup_epochs'))}"],
        ["dataset", fmt(s.get("dataset"))],
    ]
    return rows


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "missing"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def run_section(a: dict[str, Any], figures: dict[str, dict[str, Any]], title: str | None = None) -> dict[str, Any]:
    sec = section(
        title or f"Run: {a['label']}",
        _anchor("run", a["label"]),
        findings=a["findings"],
        notes=a["missing"],
        figures=_figs(a, figures),
    )
    sec["lines"].append(f"{a['path']} — history.json format {a['format_version']}, task {a['task'] or 'missing'}")
    sec["tables"].append(table(["", ""], summary_rows(a), "Summary"))
    if a.get("chance"):
        ch = a["chance"]
        sec["tables"].append(
            table(
                ["predictor", ch["metric"]],
                [
                    [f"always the majority class '{ch['majority_class']['class']}'", ch["majority_class"]["value"]],
                    [
                        f"drawing from the {ch['priors_from'].replace('class_counts_', '')} class priors",
                        ch["class_prior_draw"]["value"],
                    ],
                    ["this run, best epoch", a["summary"]["best_value"]],
                ],
                "Chance baselines (validation pixels)",
            )
        )
    if a["stages"]:
        sec["tables"].append(
            table(
                ["stage", "epochs", "count", f"mean {a['monitor']}", "mean LR", "mean train − val"],
                [
                    [
                        s["stage"],
                        f"{s['first_epoch']}–{s['last_epoch']}",
                        s["epochs"],
                        s["mean_val"],
                        fmt(s["mean_lr"], 3),
                        s["mean_gap"],
                    ]
                    for s in a["stages"]
                ],
                "Training stages",
            )
        )
    for e in a.get("evals", []):
        sec["subsections"].append(eval_section(e, figures))
    for s in a.get("sweeps", []):
        sec["subsections"].append(sweep_section(s, figures))
    return sec


def cv_section(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sec = section(
        f"Cross-validation: {a['name']}",
        _anchor("cv", a["name"]),
        findings=a["findings"],
        notes=a["missing"],
        figures=_figs(a, figures),
    )
    sec["lines"].append(
        f"{a['path']} — monitor {a['monitor'] or 'missing'}, best epoch selected on {a['selected_on'] or 'missing'}"
    )
    keys = a["metrics"]
    rows = [[str(f.get("fold")), fmt(f.get("best_epoch")), *(number(f.get(k)) for k in keys)] for f in a["folds"]]
    rows.append(["mean ± std", "", *(f"{fmt(a['mean'].get(k))} ± {fmt(a['std'].get(k))}" for k in keys)])
    sec["tables"].append(table(["fold", "best epoch", *keys], rows, "Folds"))
    if a["per_class"]:
        sec["tables"].append(
            table(
                ["class", "mean IoU", "std"],
                [
                    [c["class"], c["mean_iou"], c["std_iou"]]
                    for c in sorted(a["per_class"], key=lambda c: c["mean_iou"])
                ],
                "IoU per class",
            )
        )
    for f in a["fold_runs"]:
        f.setdefault("label", f["name"])
        sub = run_section(f, {}, f"Fold run: {f['name']}")
        sub["tables"] = sub["tables"][:1] + [t for t in sub["tables"] if t["title"] == "Training stages"]
        sec["subsections"].append(sub)
    return sec


def eval_section(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sec = section(
        f"Evaluation: {a['name']}",
        _anchor("eval", a["name"]),
        findings=a["findings"],
        notes=a["missing"],
        figures=_figs(a, figures),
    )
    sec["lines"].append(f"{a['path']} — {a['task']}")
    if a["task"] == "reconstruction":
        cols = a["columns"]
        sec["tables"].append(table(cols, [[r.get(k) for k in cols] for r in a["rows"]], "Per observed fraction"))
        return sec
    ch = a.get("chance", {})
    sec["tables"].append(
        table(
            [
                "metric",
                "value",
                f"chance: majority class ({a.get('chance_majority_class') or 'missing'})",
                "chance: class-prior draw",
            ],
            [[k, v["value"], v["majority_class"], v["class_prior_draw"]] for k, v in ch.items()],
            "Metrics",
        )
    )
    sec["tables"].append(
        table(
            ["class", "IoU", "precision", "recall", "F1", "support"],
            [[r["class"], r["iou"], r["precision"], r["recall"], r["f1"], r["support"]] for r in a["rows"]],
            "Per class",
        )
    )
    if a.get("weakest"):
        sec["tables"].append(
            table(
                ["class", "IoU", "recall", "most often predicted as", "share of its pixels"],
                [
                    [
                        r["class"],
                        r["iou"],
                        r["recall"],
                        r.get("confused_with") or "—",
                        f"{r['confused_share']:.1%}" if math.isfinite(number(r.get("confused_share"))) else "—",
                    ]
                    for r in a["weakest"]
                ],
                "Weakest classes",
            )
        )
    return sec


def sweep_section(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sec = section(
        f"Sweep: {a['name']}",
        _anchor("sweep", a["name"]),
        findings=a["findings"],
        notes=a["missing"],
        figures=_figs(a, figures),
    )
    sec["lines"].append(a["path"])
    if a.get("best"):
        b = a["best"]
        sec["tables"].append(
            table(
                ["best setting (by " + a["best_by"] + ")", "value"],
                [[k, v if isinstance(v, str) else number(v)] for k, v in b.items()],
            )
        )
    if a.get("sample_mean_gap"):
        g = a["sample_mean_gap"]
        sec["tables"].append(
            table(
                ["PSNR of the sample mean − one sample (dB)", "median", "min", "max"],
                [["all settings", g["median"], g["min"], g["max"]]],
            )
        )
    cols = a["columns"]
    sec["tables"].append(
        table(
            cols,
            [[r.get(k) if isinstance(r.get(k), str) else number(r.get(k)) for k in cols] for r in a["rows"]],
            "Settings",
        )
    )
    if a["baselines"]:
        bcols = list(dict.fromkeys(k for b in a["baselines"] for k in b))
        sec["tables"].append(
            table(
                bcols,
                [[b.get(k) if isinstance(b.get(k), str) else number(b.get(k)) for k in bcols] for b in a["baselines"]],
                "Baselines",
            )
        )
    if a["conclusions"]:
        sec["tables"].append(table(["conclusions recorded in sweep.json"], [[c] for c in a["conclusions"]]))
    return sec


def compare_section(c: dict[str, Any]) -> dict[str, Any]:
    sec = section(
        f"{c['current']} against {c['previous']}", _anchor("vs", c["current"], c["previous"]), notes=c["notes"]
    )
    sec["lines"].append(f"previous: {c['previous_path']}")
    rows = [
        [
            r["label"],
            r["previous"],
            r["current"],
            r["change"],
            f"{r['relative']:+.1%}" if math.isfinite(number(r["relative"])) else "—",
        ]
        for r in c["headline"]
    ]
    sec["tables"].append(table(["", c["previous"], c["current"], "change", "relative"], rows, "Headline numbers"))
    if c["config_diff"]:
        sec["tables"].append(
            table(
                ["config key", c["previous"], c["current"]],
                [[d["key"], _value(d["previous"]), _value(d["current"])] for d in c["config_diff"]],
                "Config keys that differ",
            )
        )
    elif not c["notes"]:
        sec["lines"].append("config.yaml: no key differs")
    return sec


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v) if not isinstance(v, float) else fmt(v)
