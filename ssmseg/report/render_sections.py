"""The report's sections (title, lines, tables, figures, findings, notes, subsections) built from the
analyses; tables and figures get anchors, and every finding gets links to the tables and figures its ``refs``
name (looked up in its own section, then in the sections around it)."""

from __future__ import annotations

import json
import math
from typing import Any

from ssmseg.report.runs import number
from ssmseg.report.series import fmt

STOP_WORDS = {
    "completed": "completed (ran every planned epoch)",
    "early_stop": "early stop (train.patience epochs without improvement)",
    "time_limit": "time limit (train.time_limit reached: stopped at an epoch boundary; resume to continue)",
    "diverged": "diverged (non-finite loss)",
    "interrupted": "interrupted (Ctrl-C or SIGTERM; resume to continue)",
    "running": "running (or killed: history.json was not closed)",
}


def table(columns: list[str], rows: list[list[Any]], title: str = "", ref: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "columns": columns,
        "ref": ref,
        "anchor": "",
        "rows": [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows],
    }


def section(title: str, anchor: str, source: str, a: dict[str, Any] | None = None, **parts: Any) -> dict[str, Any]:
    findings = [{**f, "source": source} for f in (a or {}).get("findings", [])]
    return {
        "title": title,
        "anchor": anchor,
        "source": source,
        "tables": [],
        "figures": [],
        "findings": findings,
        "notes": list((a or {}).get("missing", [])),
        "subsections": [],
        "lines": [],
        **parts,
    }


def _figs(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**figures[i], "anchor": f"fig-{i}"} for i in a.get("figures", []) if i in figures]


def _anchor(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "-" for ch in p.lower()) for p in parts)


def sections(report: dict[str, Any], figures: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group, i in report["order"]:
        a = report[group][i]
        build = {"runs": run_section, "cvs": cv_section, "evals": eval_section, "sweeps": sweep_section}[group]
        out.append(build(a, figures))
    overlay = [{**figures[i], "anchor": f"fig-{i}"} for i in report["overlay_figures"] if i in figures]
    if overlay:
        out.append(section("Runs overlaid", "overlay", "", figures=overlay))
    for c in report["comparisons"]:
        out.append(compare_section(c))
    for s in out:
        _link(s, [])
    return out


def _link(sec: dict[str, Any], parents: list[dict[str, Any]]) -> None:
    for t in sec["tables"]:
        t["anchor"] = f"{sec['anchor']}-{t['ref'] or 'table'}"
    chain = [sec, *parents]
    for f in sec["findings"]:
        links = []
        for ref in f.get("refs", []):
            for s in chain:
                hits = [(t["title"] or ref, t["anchor"]) for t in s["tables"] if t["ref"] == ref]
                hits += [(g["title"], g["anchor"]) for g in s["figures"] if g.get("role") == ref]
                if hits:
                    links += hits
                    break
        f["links"] = list(dict.fromkeys(links)) or [(sec["title"], sec["anchor"])]
    for sub in sec["subsections"]:
        _link(sub, chain)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "missing"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _training_rows(s: dict[str, Any]) -> list[list[Any]]:
    per, total = s.get("steps_per_epoch"), s.get("optimizer_steps")
    patches = s.get("patches_per_epoch")
    batch = f"batch {s['batch_size']}" if s.get("batch_size") else "batch missing"
    accum = f", accumulating {s['accumulate']}" if (s.get("accumulate") or 1) > 1 else ""
    world = f", {s['world_size']} processes" if (s.get("world_size") or 1) > 1 else ""
    val, val_total = s.get("val_items"), s.get("val_items_total")
    if val is None:
        val_text = "missing (history.json has no run.val_items)"
    elif s.get("val_subset"):
        val_text = f"{val} of {val_total} (a fixed subset: data.max_val_patches = {fmt(s.get('max_val_patches'))})"
    else:
        val_text = f"{val} (all of the validation split)"
    return [
        [
            "patches (or fields) per epoch",
            f"{fmt(patches)} of {fmt(s.get('train_items'))} training items"
            if patches is not None
            else "missing (history.json has no run.train_items)",
        ],
        ["optimiser steps per epoch", f"{fmt(per)} ({batch}{accum}{world})" if per is not None else "missing"],
        ["optimiser steps in all", fmt(total) if total is not None else "missing"],
        ["validation items scored", val_text],
    ]


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
    stop = s.get("stop_reason")
    return [
        [
            f"best {monitor} ({s.get('mode') or 'mode missing'})",
            f"{fmt(s['best_value'])} at epoch {b}" if b else "missing",
        ],
        [f"train/{metric} at the best epoch", fmt(s.get("train_at_best"))],
        ["train − validation at the best epoch", fmt(s.get("gap_at_best"))],
        ["LR at the best epoch", fmt(s.get("lr_at_best"), 3)],
        [f"last {monitor}", fmt(s.get("final_value"))],
        *([["checkpoint kept (best.pt)", "the last epoch (train.select: last)"]] if s.get("select") == "last" else []),
        ["epochs trained", f"{s.get('epochs_trained')}{planned}"],
        *_training_rows(s),
        ["why training stopped", STOP_WORDS.get(stop, stop) if stop else "missing (no stop_reason)"],
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


def run_section(
    a: dict[str, Any],
    figures: dict[str, dict[str, Any]],
    title: str | None = None,
    source: str | None = None,
    anchor: str | None = None,
) -> dict[str, Any]:
    label = a.get("label", a["name"])
    sec = section(
        title or f"Run: {label}", anchor or _anchor("run", label), source or label, a, figures=_figs(a, figures)
    )
    sec["lines"].append(f"{a['path']} — history.json format {a['format_version']}, task {a['task'] or 'missing'}")
    sec["tables"].append(table(["", ""], summary_rows(a), "Summary", "summary"))
    if a.get("schedule_changes"):
        keys = list(dict.fromkeys(k for c in a["schedule_changes"] for k in c))
        rows = [[_value(c.get(k, "")) for k in keys] for c in a["schedule_changes"]]
        sec["tables"].append(table(keys, rows, "LR schedule changes recorded in history.json", "schedule"))
    if a.get("chance"):
        ch = a["chance"]
        where = {
            True: "scored validation pixels",
            False: "whole validation split: an estimate for the subset",
            None: "the validation split's class counts",
        }[ch["exact"]]
        prior = ch["priors_from"].replace("class_counts_", "")
        rows = [
            [f"always the majority class '{ch['majority_class']['class']}'", ch["majority_class"]["value"]],
            [f"drawing from the {prior} class priors", ch["class_prior_draw"]["value"]],
            ["this run, best epoch", a["summary"]["best_value"]],
        ]
        sec["tables"].append(table(["predictor", ch["metric"]], rows, f"Chance baselines ({where})", "chance"))
    if a["stages"]:
        rows = [
            [
                s["stage"],
                f"{s['first_epoch']}–{s['last_epoch']}",
                s["epochs"],
                s["mean_val"],
                s["change"],
                fmt(s["mean_lr"], 3),
                s["mean_gap"],
            ]
            for s in a["stages"]
        ]
        cols = ["stage", "epochs", "count", f"mean {a['monitor']}", "change", "mean LR", "mean train − val"]
        sec["tables"].append(table(cols, rows, "Training stages", "stages"))
    for e in a.get("evals", []):
        sec["subsections"].append(eval_section(e, figures, f"{label}/{e['name']}"))
    for s in a.get("sweeps", []):
        sec["subsections"].append(sweep_section(s, figures, f"{label}/{s['name']}"))
    return sec


def cv_section(a: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sec = section(f"Cross-validation: {a['name']}", _anchor("cv", a["name"]), a["name"], a, figures=_figs(a, figures))
    head = a["headline"] or "missing"
    last = a.get("select") == "last"
    sec["lines"].append(
        f"{a['path']} — headline {head}; "
        + (
            f"each fold kept its last epoch ({a['selected_on']})"
            if last
            else f"the best epoch of each fold was selected on {a['selected_on'] or 'missing'} by "
            f"{a['monitor'] or 'missing'}"
        )
    )
    if a.get("scored_on"):
        sec["lines"].append(f"held-out scores: {a['scored_on']}")
    if a.get("note"):
        sec["lines"].append(a["note"])
    keys = a["metrics"]
    chose = "at the last epoch" if last else "selected the epoch"
    label = {k: f"{k} ({chose})" if k.startswith("val/") and a["heldout"] else k for k in keys}
    rows = [[str(f.get("fold")), fmt(f.get("best_epoch")), *(number(f.get(k)) for k in keys)] for f in a["folds"]]
    rows.append(["mean ± std", "", *(f"{fmt(a['mean'].get(k))} ± {fmt(a['std'].get(k))}" for k in keys)])
    sec["tables"].append(table(["fold", "best epoch", *(label[k] for k in keys)], rows, "Folds", "folds"))
    if a["per_class"]:
        rows = [[c["class"], c["mean_iou"], c["std_iou"]] for c in sorted(a["per_class"], key=lambda c: c["mean_iou"])]
        sec["tables"].append(table(["class", "mean IoU", "std"], rows, "IoU per class (held out)", "per_class"))
    for f in a["fold_runs"]:
        source = f"{a['name']}/{f['name']}"
        sub = run_section(f, {}, f"Fold run: {f['name']}", source, _anchor("cv", a["name"], f["name"]))
        sub["tables"] = [t for t in sub["tables"] if t["ref"] in ("summary", "stages")]
        sec["subsections"].append(sub)
    return sec


def eval_section(a: dict[str, Any], figures: dict[str, dict[str, Any]], source: str | None = None) -> dict[str, Any]:
    source = source or a["name"]
    sec = section(f"Evaluation: {a['name']}", _anchor("eval", source), source, a, figures=_figs(a, figures))
    sec["lines"].append(f"{a['path']} — {a['task']}")
    if a["layout"] == "per_fraction":
        cols = a["columns"]
        rows = [[r.get(k) for k in cols] for r in a["rows"]]
        sec["tables"].append(table(cols, rows, "Per observed fraction", "per_fraction"))
        return sec
    cols = [
        "metric",
        "value",
        f"chance: majority class ({a.get('chance_majority_class') or 'missing'})",
        "chance: class-prior draw",
    ]
    rows = [[k, v["value"], v["majority_class"], v["class_prior_draw"]] for k, v in a.get("chance", {}).items()]
    sec["tables"].append(table(cols, rows, "Metrics and chance baselines on the same pixels", "metrics"))
    rows = [[r["class"], r["iou"], r["precision"], r["recall"], r["f1"], r["support"]] for r in a["rows"]]
    sec["tables"].append(
        table(["class", "IoU", "precision", "recall", "F1", "support"], rows, "Per class", "per_class")
    )
    if a.get("weakest"):
        rows = [
            [
                r["class"],
                r["iou"],
                r["recall"],
                r.get("confused_with") or "—",
                f"{r['confused_share']:.1%}" if math.isfinite(number(r.get("confused_share"))) else "—",
            ]
            for r in a["weakest"]
        ]
        cols = ["class", "IoU", "recall", "most often predicted as", "share of its pixels"]
        sec["tables"].append(table(cols, rows, "Weakest classes", "weakest"))
    return sec


def sweep_section(a: dict[str, Any], figures: dict[str, dict[str, Any]], source: str | None = None) -> dict[str, Any]:
    source = source or a["name"]
    sec = section(f"Sweep: {a['name']}", _anchor("sweep", source), source, a, figures=_figs(a, figures))
    sec["lines"].append(a["path"])
    if a.get("best"):
        rows = [[k, v if isinstance(v, str) else number(v)] for k, v in a["best"].items()]
        sec["tables"].append(table([f"best setting (by {a['best_by']})", "value"], rows, "", "best"))
    cols = a["columns"]
    rows = [[r.get(k) if isinstance(r.get(k), str) else number(r.get(k)) for k in cols] for r in a["rows"]]
    sec["tables"].append(table(cols, rows, "Settings", "settings"))
    if a["baselines"]:
        bcols = list(dict.fromkeys(k for b in a["baselines"] for k in b))
        rows = [[b.get(k) if isinstance(b.get(k), str) else number(b.get(k)) for k in bcols] for b in a["baselines"]]
        sec["tables"].append(table(bcols, rows, "Baselines", "baselines"))
    return sec


def compare_section(c: dict[str, Any]) -> dict[str, Any]:
    source = f"{c['current']} vs {c['previous']}"
    sec = section(
        f"{c['current']} against {c['previous']}",
        _anchor("vs", c["current"], c["previous"]),
        source,
        {"findings": c["findings"], "missing": c["notes"]},
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
    cols = ["", c["previous"], c["current"], "change", "relative"]
    sec["tables"].append(
        table(cols, rows, "Headline numbers" if c["kind"] == "run" else "Means over folds", "headline")
    )
    if c["kind"] == "cv" and c["per_fold"]:
        rows = [
            [
                str(f["fold"]),
                f["previous"],
                f["current"],
                f["change"],
                fmt(f["best_epoch_previous"]),
                fmt(f["best_epoch_current"]),
            ]
            for f in c["per_fold"]
        ]
        p = c.get("paired")
        if p:
            rows.append(
                [
                    "mean ± std of the change",
                    "",
                    "",
                    f"{fmt(p['mean_change'])} ± {fmt(p['std_change'])}",
                    "",
                    f"higher in {p['higher']} of {p['folds']}",
                ]
            )
        cols = [
            "fold",
            f"{c['previous']} {c['metric']}",
            f"{c['current']} {c['metric']}",
            "change",
            "best epoch (previous)",
            "best epoch (current)",
        ]
        sec["tables"].append(table(cols, rows, f"Per fold, held out: {c['metric']}", "per_fold"))
    if c["config_diff"]:
        rows = [[d["key"], _value(d["previous"]), _value(d["current"])] for d in c["config_diff"]]
        sec["tables"].append(
            table(["config key", c["previous"], c["current"]], rows, "Config keys that differ", "config_diff")
        )
    elif not c["notes"]:
        sec["lines"].append("config.yaml: no key differs")
    return sec


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v) if not isinstance(v, float) else fmt(v)
