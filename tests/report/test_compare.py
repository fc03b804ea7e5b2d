"""--vs: runs validated on different pixels are flagged; a cv folder against a cv folder, fold by fold."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.report import make_report
from ssmseg.report.analysis import analyse_run
from ssmseg.report.compare import compare
from ssmseg.report.runs import read_run
from tests.report import shapes


def _run(folder, **cfg):
    hist = shapes.clean(20, 0)
    cap = cfg.get("data__max_val_patches")
    hist["run"].update(val_items=cap or 100, val_items_total=100)
    return read_run(shapes.write_run(folder, hist, shapes.config(20, **cfg)))


def test_vs_warns_when_the_runs_were_validated_on_different_pixels(tmp_path):
    prev, cur = _run(tmp_path / "a"), _run(tmp_path / "b", data__max_val_patches=27)
    c = compare(cur, analyse_run(cur), prev, analyse_run(prev))
    (f,) = c["findings"]
    assert f["rule"] == "different_validation" and "data.max_val_patches None -> 27" in f["message"]
    assert {d["key"] for d in f["evidence"]["differences"]} == {"data.max_val_patches", "run.val_items"}
    same = _run(tmp_path / "c")
    assert compare(same, analyse_run(same), prev, analyse_run(prev))["findings"] == []
    result = make_report([cur.path], vs=prev.path, out=tmp_path / "r")
    assert [x["rule"] for x in result.findings if x["source"] == "b vs a"] == ["different_validation"]
    assert "different_validation" in (result.out / "report.html").read_text()


def test_cv_vs_cv_compares_held_out_scores_fold_by_fold(tmp_path):
    old = shapes.write_cv(tmp_path / "old", [0.60, 0.70, 0.65])
    new = shapes.write_cv(tmp_path / "new", [0.66, 0.73, 0.64], optim__lr=3e-3)
    result = make_report([new], vs=old, out=tmp_path / "r")
    data = json.loads((result.out / "report.json").read_text())
    (c,) = data["comparisons"]
    assert c["kind"] == "cv" and c["metric"] == "heldout/miou"
    assert c["config_diff"] == [{"key": "optim.lr", "previous": 1e-3, "current": 3e-3}]
    assert [round(f["change"], 4) for f in c["per_fold"]] == [0.06, 0.03, -0.01]
    assert c["paired"]["higher"] == 2 and c["paired"]["mean_change"] == pytest.approx(0.0267, abs=1e-4)
    assert c["findings"] == []
    assert any(h.startswith("new vs old: heldout/miou changed by 0.02667") for h in result.headlines)
    md = (result.out / "report.md").read_text()
    assert "**Per fold, held out: heldout/miou**" in md and "| optim.lr | 0.001 | 0.003 |" in md


def test_cv_vs_cv_on_different_held_out_pixels_is_flagged(tmp_path):
    old = shapes.write_cv(tmp_path / "old", [0.6, 0.7], pixels=4096)
    new = shapes.write_cv(tmp_path / "new", [0.6, 0.7], pixels=1024)
    result = make_report([new], vs=old, out=tmp_path / "r")
    assert [f["rule"] for f in result.findings if f["source"] == "new vs old"] == ["different_validation"]


def test_vs_must_be_like_with_like(tmp_path):
    cv = shapes.write_cv(tmp_path / "cv", [0.6, 0.7])
    run = shapes.write_run(tmp_path / "run", shapes.clean(20, 0), shapes.config(20))
    res = CliRunner().invoke(app, ["report", str(run), "--vs", str(cv), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "compare like with like" in res.output
