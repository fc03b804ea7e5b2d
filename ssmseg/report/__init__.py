"""``ssmseg report``: markdown, self-contained HTML, JSON and plots from run, cv, eval and sweep folders.

Reads files only (never the engine, the tasks or torch). ``make_report`` is the one library call:
discover what each path holds (``runs``), analyse it (``analysis``), draw (``plots``), render (``render``),
all into a fresh ``.partial`` folder renamed into a folder it created itself (never an existing one).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssmseg.errors import InputError, UsageError
from ssmseg.report import analysis
from ssmseg.report.runs import CV, Eval, Run, Sweep, discover, number

MAX_RUN_FIGURES = 3  # runs beyond this get only the overlaid figure


@dataclass
class ReportResult:
    out: Path
    findings: list[dict[str, Any]]
    headlines: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def make_report(paths: list[Path], vs: Path | None = None, out: Path | None = None) -> ReportResult:
    """Write report.md, report.html, report.json and plots/ for ``paths`` (compared with ``vs``) into
    ``out`` (default: <first path>/report, report-2, ...), created exclusively."""
    if not paths:
        raise UsageError("give at least one run, cv, eval or sweep folder")
    sources = [s for p in paths for s in discover(Path(p))]
    previous = None
    if vs is not None:
        found = discover(Path(vs))
        if len(found) != 1 or not isinstance(found[0], Run):
            raise UsageError(f"--vs '{vs}' is not a run folder; give the folder holding the previous history.json")
        previous = found[0]
    dest = _reserve(Path(out) if out is not None else None, Path(paths[0]))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        (tmp / "plots").mkdir()
        report = build(sources, previous, tmp, [str(p) for p in paths], str(vs) if vs else None)
        from ssmseg.report.render import render

        render(report, tmp)
        try:
            os.rename(tmp, dest)  # replaces the empty folder reserved above (ours)
        except OSError:
            dest.rmdir()
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        raise
    return ReportResult(dest, report["findings"], report["headlines"], [m["note"] for m in report["missing"]])


def _reserve(out: Path | None, first: Path) -> Path:
    """Create the output folder exclusively: --out must not exist; the default takes the first free
    name among report, report-2, report-3 ... beside the first path's files."""
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir()
        except FileExistsError:
            raise UsageError(
                f"--out '{out}' already exists; the report never writes into an existing folder: give a new folder"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot create '{out}': {exc.strerror or exc}; give a writable --out") from exc
        return out
    base = first if first.is_dir() else first.parent
    for k in range(1, 10_000):
        candidate = base / ("report" if k == 1 else f"report-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError(f"cannot write a report into '{base}': {exc.strerror or exc}; give --out DIR") from exc
    raise InputError(f"'{base}' already holds 9999 reports; give --out DIR")


def _unique_labels(runs: list[Run]) -> list[str]:
    names = [r.name for r in runs]
    return [f"{r.path.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def build(sources: list[Any], previous: Run | None, out: Path, inputs: list[str], vs: str | None) -> dict[str, Any]:
    """Analyse every source and draw its figures; returns the report (report.json plus the curves)."""
    from ssmseg.report import plots

    plots_dir = out / "plots"
    runs = [s for s in sources if isinstance(s, Run)]
    labels = dict(zip(map(id, runs), _unique_labels(runs), strict=True))
    report: dict[str, Any] = {
        "format_version": 1,
        "inputs": inputs,
        "vs": vs,
        "runs": [],
        "cvs": [],
        "evals": [],
        "sweeps": [],
        "comparisons": [],
        "figures": [],
        "findings": [],
        "missing": [],
        "headlines": [],
        "thresholds": analysis.THRESHOLDS,
        "order": [],
    }
    used: set[str] = set()

    def fig_name(stem: str) -> str:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem) or "figure"
        name, k = f"{stem}.png", 2
        while name in used:
            name, k = f"{stem}_{k}.png", k + 1
        used.add(name)
        return name

    def add_figure(fig: dict[str, Any] | None, owner: dict[str, Any]) -> None:
        if fig is not None:
            report["figures"].append(fig)
            owner.setdefault("figures", []).append(fig["id"])

    def sub_outputs(a: dict[str, Any], evals: list[Eval], sweeps: list[Sweep]) -> None:
        a["evals"] = [analysis.analyse_eval(e) for e in evals]
        a["sweeps"] = [analysis.analyse_sweep(s) for s in sweeps]
        for e in a["evals"]:
            add_figure(plots.eval_figure(plots_dir, fig_name(f"{a['name']}_{e['name']}"), e), e)
        for s in a["sweeps"]:
            add_figure(plots.sweep(plots_dir, fig_name(f"{a['name']}_{s['name']}"), s), s)

    run_analyses = []
    for src in sources:
        if isinstance(src, Run):
            a = analysis.analyse_run(src)
            a["label"] = labels[id(src)]
            sub_outputs(a, src.evals, src.sweeps)
            run_analyses.append((src, a))
            report["runs"].append(a)
            report["order"].append(("runs", len(report["runs"]) - 1))
        elif isinstance(src, CV):
            a = analysis.analyse_cv(src)
            folds = [analysis.analyse_run(r) for r in src.fold_runs]
            a["fold_runs"] = folds
            items = [(f["name"], f) for f in folds if f["curves"].epoch.size]
            if items:
                add_figure(
                    plots.curves(plots_dir, fig_name(f"{a['name']}_curves"), items, f"{a['name']}: folds overlaid"), a
                )
            add_figure(plots.cv_folds(plots_dir, fig_name(f"{a['name']}_folds"), a), a)
            report["cvs"].append(a)
            report["order"].append(("cvs", len(report["cvs"]) - 1))
        elif isinstance(src, Eval):
            a = analysis.analyse_eval(src)
            add_figure(plots.eval_figure(plots_dir, fig_name(a["name"]), a), a)
            report["evals"].append(a)
            report["order"].append(("evals", len(report["evals"]) - 1))
        elif isinstance(src, Sweep):
            a = analysis.analyse_sweep(src)
            add_figure(plots.sweep(plots_dir, fig_name(a["name"]), a), a)
            report["sweeps"].append(a)
            report["order"].append(("sweeps", len(report["sweeps"]) - 1))

    prev_analysis = None
    if previous is not None:
        prev_analysis = analysis.analyse_run(previous)
        prev_analysis["label"] = f"previous: {previous.name}"
        for src, a in run_analyses:
            report["comparisons"].append(analysis.compare(src, a, previous, prev_analysis))
    with_curves = [(a["label"], a) for _, a in run_analyses if a["curves"].epoch.size]
    if len(with_curves) <= MAX_RUN_FIGURES:
        for label, a in with_curves:
            add_figure(plots.curves(plots_dir, fig_name(f"{label}_curves"), [(label, a)], f"{label}"), a)
    overlay = with_curves + (
        [(prev_analysis["label"], prev_analysis)] if prev_analysis and prev_analysis["curves"].epoch.size else []
    )
    holder: dict[str, Any] = {}
    if len(overlay) > 1:
        add_figure(plots.curves(plots_dir, fig_name("runs_overlaid"), overlay, "runs overlaid"), holder)
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
                f"{a['label']}: best {a['monitor']} {analysis.fmt(s['best_value'])} at epoch "
                f"{s['best_epoch']} of {s['epochs_trained']} ({s['stop_reason'] or 'no stop_reason'})"
            )
        for sub in a["evals"] + a["sweeps"]:
            take(sub, f"{a['label']}/{sub['name']}")
    for a in report["cvs"]:
        take(a, a["name"])
        for f in a["fold_runs"]:
            take(f, f"{a['name']}/{f['name']}")
        m = a["monitor"]
        if m in a["mean"]:
            report["headlines"].append(
                f"{a['name']}: {m} {analysis.fmt(a['mean'][m])} ± "
                f"{analysis.fmt(a['std'].get(m))} over {len(a['folds'])} folds"
            )
    for a in report["evals"] + report["sweeps"]:
        take(a, a["name"])
    for a in report["evals"] + [e for r in report["runs"] for e in r["evals"]]:
        if a.get("headline"):
            h = a["headline"]
            report["headlines"].append(f"{a['name']}: mIoU {analysis.fmt(h['miou'])}, OA {analysis.fmt(h['oa'])}")
    for a in report["sweeps"] + [s for r in report["runs"] for s in r["sweeps"]]:
        if a.get("best"):
            b = a["best"]
            report["headlines"].append(
                f"{a['name']}: best {a['best_by']} {analysis.fmt(number(b.get(a['best_by'])))} dB "
                f"({b.get('solver')}, steps {b.get('steps')}, NFE {b.get('nfe')})"
            )
    for c in report["comparisons"]:
        report["missing"].extend({"source": f"{c['current']} vs {c['previous']}", "note": n} for n in c["notes"])
