"""Render the analysed report with jinja2 templates: report.md, a self-contained report.html (figures
embedded as data URIs) and report.json (every number, figure and finding, machine-readable).

The templates only lay out sections, tables, figures and findings; the words come from the analysis. Every
table and figure has an anchor, and every finding links to the ones its ``refs`` name (its evidence).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ssmseg.report.render_sections import sections
from ssmseg.report.rules import RULES, THRESHOLDS
from ssmseg.report.series import clean


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
    secs = sections(report, figures)
    ctx = {
        "title": "ssmseg report",
        "inputs": report["inputs"],
        "vs": report["vs"],
        "sections": secs,
        "findings": all_findings(secs),
        "verdict": verdict(report),
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


def all_findings(secs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every finding of every section (depth first), each with its source and its evidence links."""
    out: list[dict[str, Any]] = []

    def walk(s: dict[str, Any]) -> None:
        out.extend(s["findings"])
        for sub in s["subsections"]:
            walk(sub)

    for s in secs:
        walk(s)
    return out


def verdict(report: dict[str, Any]) -> str:
    """What to say when no rule fired: that none did, only when something could be judged."""
    judged = [a for a in report["runs"] if a["stages"]] + report["cvs"] + report["evals"] + report["sweeps"]
    judged += [a for r in report["runs"] for a in r["evals"] + r["sweeps"]]
    if judged:
        return "none of the rules fired ({})".format(", ".join(n for n, _ in RULES))
    return "nothing could be judged: no run has a finite monitored metric (see What is missing)"


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
