"""``ssmseg report``: markdown, self-contained HTML, JSON and plots from run, cv, eval and sweep folders.

Reads files only (never the engine, the tasks or torch). ``make_report`` is the one library call:
discover what each path holds (``runs``), analyse it (``analysis``), draw (``plots``), render (``render``),
all in a staging folder published through ``ssmseg.outputs`` (a marked folder of kind ``report``: a rerun
with the same inputs replaces its own report; a folder ssmseg did not write is never touched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssmseg import outputs
from ssmseg.errors import UsageError
from ssmseg.report import analysis
from ssmseg.report.compare import compare, compare_cv
from ssmseg.report.rules import THRESHOLDS
from ssmseg.report.runs import CV, Eval, Run, discover, number
from ssmseg.report.series import fmt

MAX_RUN_FIGURES = 3  # runs beyond this get only the overlaid figure
MAX_IMAGES = 6  # images an eval wrote that are copied into the report, per eval


@dataclass
class ReportResult:
    out: Path
    findings: list[dict[str, Any]]
    headlines: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def make_report(paths: list[Path], vs: Path | None = None, out: Path | None = None) -> ReportResult:
    """Write report.md, report.html, report.json and plots/ for ``paths`` (compared with ``vs``) into
    ``out`` (default: <first path>/report, report-2, ...: the first that is free or this same report)."""
    if not paths:
        raise UsageError("give at least one run, cv, eval or sweep folder")
    sources = [s for p in paths for s in discover(Path(p))]
    previous = _previous(vs, sources) if vs is not None else None
    inputs = {"paths": [str(Path(p).resolve()) for p in paths], "vs": str(Path(vs).resolve()) if vs else None}
    if out is not None:
        outputs.claim(Path(out), "report", inputs, option="--out")  # absent, empty, or this same report
        dest = Path(out)
    else:
        first = Path(paths[0])
        dest = outputs.pick_name(first if first.is_dir() else first.parent, "report", "report", inputs)
    with outputs.staged(dest) as tmp:
        (tmp / "plots").mkdir()
        report = build(sources, previous, tmp, [str(p) for p in paths], str(vs) if vs else None)
        from ssmseg.report.render import render

        render(report, tmp)
        outputs.publish(tmp, dest, "report", inputs, about=f"ssmseg report of {len(paths)} folder(s)")
    return ReportResult(dest, report["findings"], report["headlines"], [m["note"] for m in report["missing"]])


def _previous(vs: Path, sources: list[Any]) -> Run | CV:
    found = discover(Path(vs))
    if len(found) != 1 or not isinstance(found[0], Run | CV):
        raise UsageError(
            f"--vs '{vs}' is not a run or cv folder; give the folder holding history.json or cv_summary.json"
        )
    kind = type(found[0])
    if not any(isinstance(s, kind) for s in sources):
        what = "a cv folder" if kind is CV else "a run folder"
        raise UsageError(f"--vs '{vs}' is {what}, but no {what} is being reported; compare like with like")
    return found[0]


def _unique_labels(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    return [f"{r.path.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


class _Figures:
    """Names and registers the figures of one report."""

    def __init__(self, report: dict[str, Any], plots_dir: Path) -> None:
        self.report, self.dir, self.used = report, plots_dir, set()

    def name(self, stem: str) -> str:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem) or "figure"
        name, k = f"{stem}.png", 2
        while name in self.used:
            name, k = f"{stem}_{k}.png", k + 1
        self.used.add(name)
        return name

    def add(self, fig: dict[str, Any] | None, owner: dict[str, Any]) -> None:
        if fig is not None:
            self.report["figures"].append(fig)
            owner.setdefault("figures", []).append(fig["id"])

    def outputs_of(self, a: dict[str, Any], stem: str) -> None:
        """An eval's or a sweep's figures, and the images its command wrote."""
        from ssmseg.report import plots

        if a["kind"] == "eval":
            self.add(plots.eval_figure(self.dir, self.name(stem), a), a)
            self.add(plots.confusion(self.dir, self.name(f"{stem}_confusion"), a), a)
        else:
            self.add(plots.sweep(self.dir, self.name(stem), a), a)
        for image in a.get("images", [])[:MAX_IMAGES]:
            self.add(plots.copy_image(self.dir, self.name(f"{stem}_{Path(image['name']).stem}"), image, a["name"]), a)


def build(
    sources: list[Any], previous: Run | CV | None, out: Path, inputs: list[str], vs: str | None
) -> dict[str, Any]:
    """Analyse every source and draw its figures; returns the report (report.json plus the curves)."""
    from ssmseg.report import plots

    runs = [s for s in sources if isinstance(s, Run)]
    labels = dict(zip(map(id, runs), _unique_labels(runs), strict=True))
    report: dict[str, Any] = {
        "format_version": 2,
        "inputs": inputs,
        "vs": vs,
        **{k: [] for k in ("runs", "cvs", "evals", "sweeps", "comparisons", "figures", "findings", "missing")},
        **{k: [] for k in ("headlines", "order")},
        "thresholds": THRESHOLDS,
    }
    figs = _Figures(report, out / "plots")
    run_analyses, cv_analyses = [], []
    for src in sources:
        if isinstance(src, Run):
            a = analysis.analyse_run(src)
            a["label"] = labels[id(src)]
            a["evals"] = [analysis.analyse_eval(e) for e in src.evals]
            a["sweeps"] = [analysis.analyse_sweep(s) for s in src.sweeps]
            for sub in a["evals"] + a["sweeps"]:
                figs.outputs_of(sub, f"{a['name']}_{sub['name']}")
            run_analyses.append((src, a))
            group = "runs"
        elif isinstance(src, CV):
            a = analysis.analyse_cv(src)
            a["fold_runs"] = [analysis.analyse_run(r) for r in src.fold_runs]
            items = [(f["name"], f) for f in a["fold_runs"] if f["curves"].epoch.size]
            figs.add(plots.cv_folds(out / "plots", figs.name(f"{a['name']}_folds"), a), a)
            if items:
                title = f"{a['name']}: folds overlaid"
                figs.add(plots.curves(out / "plots", figs.name(f"{a['name']}_curves"), items, title), a)
            cv_analyses.append((src, a))
            group = "cvs"
        else:
            a = analysis.analyse_eval(src) if isinstance(src, Eval) else analysis.analyse_sweep(src)
            figs.outputs_of(a, a["name"])
            group = "evals" if isinstance(src, Eval) else "sweeps"
        report[group].append(a)
        report["order"].append((group, len(report[group]) - 1))
    prev_analysis = None
    if isinstance(previous, Run):
        prev_analysis = analysis.analyse_run(previous)
        prev_analysis["label"] = f"previous: {previous.name}"
        for src, a in run_analyses:
            report["comparisons"].append(compare(src, a, previous, prev_analysis))
    elif isinstance(previous, CV):
        prev_cv = analysis.analyse_cv(previous)
        for src, a in cv_analyses:
            report["comparisons"].append(compare_cv(src, a, previous, prev_cv))
    with_curves = [(a["label"], a) for _, a in run_analyses if a["curves"].epoch.size]
    if len(with_curves) <= MAX_RUN_FIGURES:
        for label, a in with_curves:
            title = f"{label}: training curves"
            figs.add(plots.curves(out / "plots", figs.name(f"{label}_curves"), [(label, a)], title), a)
    overlay = with_curves + (
        [(prev_analysis["label"], prev_analysis)] if prev_analysis and prev_analysis["curves"].epoch.size else []
    )
    holder: dict[str, Any] = {}
    if len(overlay) > 1:
        figs.add(plots.curves(out / "plots", figs.name("runs_overlaid"), overlay, "runs overlaid"), holder)
    report["overlay_figures"] = holder.get("figures", [])
    _collect(report)
    return report


def _collect(report: dict[str, Any]) -> None:
    """Flat lists of every finding and missing item (with their source), and the CLI's headlines."""

    def take(a: dict[str, Any], source: str) -> None:
        report["findings"].extend({**f, "source": source} for f in a.get("findings", []))
        report["missing"].extend({"source": source, "note": m} for m in a.get("missing", []))

    for a in report["runs"]:
        take(a, a["label"])
        s = a.get("summary", {})
        if s.get("best_epoch") is not None:
            report["headlines"].append(
                f"{a['label']}: best {a['monitor']} {fmt(s['best_value'])} at epoch "
                f"{s['best_epoch']} of {s['epochs_trained']} ({s['stop_reason'] or 'no stop_reason'})"
                + (
                    f"; best.pt is the last epoch (train.select: last), {a['monitor']} {fmt(s['final_value'])}"
                    if s.get("select") == "last"
                    else ""
                )
            )
        for sub in a["evals"] + a["sweeps"]:
            take(sub, f"{a['label']}/{sub['name']}")
    for a in report["cvs"]:
        take(a, a["name"])
        for f in a["fold_runs"]:
            take(f, f"{a['name']}/{f['name']}")
        report["headlines"].append(cv_headline(a))
    for a in report["evals"] + report["sweeps"]:
        take(a, a["name"])
    for a in report["evals"] + [e for r in report["runs"] for e in r["evals"]]:
        if a.get("headline"):
            h = a["headline"]
            report["headlines"].append(f"{a['name']}: mIoU {fmt(h['miou'])}, OA {fmt(h['oa'])}")
    for a in report["sweeps"] + [s for r in report["runs"] for s in r["sweeps"]]:
        if a.get("best"):
            b = a["best"]
            report["headlines"].append(
                f"{a['name']}: best {a['best_by']} {fmt(number(b.get(a['best_by'])))} dB "
                f"({b.get('solver')}, steps {b.get('steps')}, NFE {b.get('nfe')})"
            )
    for c in report["comparisons"]:
        source = f"{c['current']} vs {c['previous']}"
        take({"findings": c["findings"], "missing": c["notes"]}, source)
        if c.get("paired"):
            p = c["paired"]
            report["headlines"].append(
                f"{source}: {p['metric']} changed by {fmt(p['mean_change'])} ± {fmt(p['std_change'])} per fold "
                f"(higher in {p['higher']} of {p['folds']} folds)"
            )


def cv_headline(a: dict[str, Any]) -> str:
    """'cv: heldout/miou 0.71 ± 0.02 over 3 folds (val/miou 0.74 selected the epoch)'."""
    key, sel = a["headline"], a.get("selector")
    if key is None:
        return f"{a['name']}: no fold has a score yet"
    text = f"{a['name']}: {key} {fmt(a['mean'].get(key))} ± {fmt(a['std'].get(key))} over {len(a['folds'])} folds"
    if sel and sel != key and sel in a["mean"]:
        last = a.get("select") == "last"
        text += f" ({sel} {fmt(a['mean'][sel])} {'at the kept last epoch' if last else 'selected the epoch'})"
    elif not key.startswith("heldout/"):
        text += " (validation values: no held-out score)"
    return text
