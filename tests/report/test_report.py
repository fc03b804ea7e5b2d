"""The whole report: files written, report.json content, exclusive output folders, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.report import make_report
from tests.conftest import REPO
from tests.report import shapes

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = shapes.write_run(root / "over", shapes.overfit(), shapes.config(60, 0, optim__lr=3e-3))
    (run / "eval" / "test").mkdir(parents=True)
    (run / "eval" / "test" / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    (run / "sweep").mkdir()
    (run / "sweep" / "sweep.json").write_text(json.dumps(shapes.sweep()))
    prev = shapes.write_run(root / "clean", shapes.clean(), shapes.config(60, 3))
    cv = shapes.write_cv(root / "cv", [0.5, 0.7, 0.9])
    rec = root / "recon_eval"
    rec.mkdir()
    (rec / "metrics.json").write_text(json.dumps(shapes.recon_metrics()))
    result = make_report([run, cv, rec], vs=prev)
    return root, result


def test_report_files_and_json(tree):
    root, result = tree
    out = result.out
    assert out == root / "over" / "report"
    assert {p.name for p in out.iterdir()} == {"report.md", "report.html", "report.json", "plots", ".ssmseg.json"}
    marker = json.loads((out / ".ssmseg.json").read_text())
    assert marker["kind"] == "report" and "report.html" in marker["files"]
    data = json.loads((out / "report.json").read_text())
    files = {f["file"] for f in data["figures"]}
    assert files == {f"plots/{p.name}" for p in (out / "plots").iterdir()}
    assert all(f["data"] for f in data["figures"])
    rules = {(f["source"], f["rule"]) for f in data["findings"]}
    assert {
        ("over", "degradation_after_best"),
        ("over", "overfitting"),
        ("over/eval/test", "weak_classes"),
        ("cv", "cv_spread"),
        ("over/sweep", "sweep"),
    } <= rules
    (run,) = data["runs"]
    assert [s["stage"] for s in run["stages"]][-1] == "decline" and run["summary"]["best_epoch"] == 25
    assert data["comparisons"][0]["config_diff"][0]["key"] == "optim.lr"
    assert data["cvs"][0]["mean"]["heldout/miou"] == pytest.approx(0.7) and data["cvs"][0]["headline"] == "heldout/miou"
    roles = {f["role"] for f in data["figures"]}
    assert {"curves", "fold_figure", "confusion", "per_class_figure", "figure", "per_fraction_figure"} <= roles
    assert data["evals"][0]["task"] == "reconstruction" and len(data["evals"][0]["rows"]) == 3
    assert data["rules"]["overfitting"] and data["thresholds"]["cv_spread"] == 0.1
    assert not list(root.rglob("*.partial"))


def test_markdown_has_every_section_and_the_findings(tree):
    _, result = tree
    md = (result.out / "report.md").read_text()
    for needle in (
        "## Run: over",
        "**Summary**",
        "**Training stages**",
        "**Chance baselines",
        "### Evaluation: eval/test",
        "**Weakest classes**",
        "### Sweep: sweep",
        "## Cross-validation: cv",
        "mean ± std",
        "## over against clean",
        "**Config keys that differ**",
        "| optim.lr | 0.001 | 0.003 |",
        "**degradation_after_best**",
        "## Evaluation: recon_eval",
        "**Per observed fraction**",
        "![",
        "](plots/",
    ):
        assert needle in md, needle


def test_default_output_never_touches_an_existing_folder(tmp_path):
    run = shapes.write_run(tmp_path / "run", shapes.clean(30, 0), shapes.config(30))
    (run / "report").mkdir()
    (run / "report" / "mine.txt").write_text("keep")
    first = make_report([run])
    again = make_report([run])  # the same inputs: its own report is replaced, not duplicated
    other = make_report([run], vs=run)  # other inputs: a new folder
    assert first.out.name == again.out.name == "report-2" and other.out.name == "report-3"
    assert sorted(p.name for p in (run / "report").iterdir()) == ["mine.txt"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_out_is_claimed_through_outputs(tmp_path, monkeypatch):
    import ssmseg.report as report
    from ssmseg.outputs import OutputError

    run = shapes.write_run(tmp_path / "run", shapes.clean(30, 0), shapes.config(30))
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("keep")
    with monkeypatch.context() as m:  # refused before any work is done
        m.setattr(report, "build", lambda *a, **k: pytest.fail("the report was built before --out was claimed"))
        with pytest.raises(OutputError, match="ssmseg only replaces folders it wrote"):
            make_report([run], out=tmp_path / "user")
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["notes.txt"]
    out = make_report([run], out=tmp_path / "r").out
    (out / "extra.txt").write_text("mine")  # a file the user added to a report: never replaced
    with pytest.raises(OutputError, match=r"extra\.txt"):
        make_report([run], out=tmp_path / "r")
    assert (out / "extra.txt").read_text() == "mine"


def test_a_failed_report_leaves_nothing_behind(tmp_path, monkeypatch):
    run = shapes.write_run(tmp_path / "run", shapes.clean(30, 0), shapes.config(30))
    import ssmseg.report.render as render

    def boom(*_a, **_k):
        raise RuntimeError("planted")

    monkeypatch.setattr(render, "render", boom)
    with pytest.raises(RuntimeError):
        make_report([run], out=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "history.json"]
    with pytest.raises(RuntimeError):
        make_report([run])  # the default folder: nothing left beside the run's files either
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "history.json"]


def test_awkward_runs_still_get_a_report(tmp_path):
    from tests.report.test_runs import v1

    runs = [
        shapes.write_run(tmp_path / "diverged", shapes.divergent(), shapes.config(40)),
        shapes.write_run(tmp_path / "old", v1(shapes.clean(30, 0)), shapes.config(30)),
        shapes.write_run(tmp_path / "empty", None, shapes.config(10)),
        shapes.write_run(tmp_path / "recon", shapes.reconstruction(), shapes.config(40, 0, "val/psnr")),
    ]
    result = make_report(runs, out=tmp_path / "r")
    data = json.loads((result.out / "report.json").read_text())
    by = {r["name"]: r for r in data["runs"]}
    assert [f["rule"] for f in by["diverged"]["findings"]] == ["divergence"]
    assert any("format 1" in m for m in by["old"]["missing"]) and by["old"]["findings"] == []
    assert any("no history.json" in m for m in by["empty"]["missing"]) and by["empty"]["summary"]["best_epoch"] is None
    assert by["recon"]["findings"] == [] and any("no chance baseline for psnr" in m for m in by["recon"]["missing"])
    (overlay,) = [f for f in data["figures"] if f["id"] == "runs_overlaid"]
    assert set(overlay["data"]["runs"]) == {"diverged", "old", "recon"}
    assert {"psnr", "rmse", "ssim", "miou"} <= set(overlay["data"]["panels"])
    md = (result.out / "report.md").read_text()
    assert "no history.json" in md and "stop_reason is 'diverged'" in md


def test_cli_report(tmp_path):
    run = shapes.write_run(tmp_path / "run", shapes.undertrained(), shapes.config(30))
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "best val/miou" in res.output and "[still_improving]" in res.output
    assert f"wrote {tmp_path / 'r'}" in res.output and (tmp_path / "r" / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["{tmp}/nope"], 2, "does not exist"),
        (["{run}", "--out", "{run}"], 1, "ssmseg only replaces folders it wrote itself"),
        (["{run}", "--vs", "{tmp}/ev"], 2, "not a run or cv folder"),
        (["{tmp}/junk"], 1, "not a run, cv, eval or sweep"),
        (["{tmp}/bad"], 1, "not valid JSON"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, code, needle):
    run = shapes.write_run(tmp_path / "run", None, shapes.config(10))
    (tmp_path / "junk").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "history.json").write_text("{")
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    res = runner.invoke(app, ["report", *(a.format(tmp=tmp_path, run=run) for a in args)])
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
    assert not (run / "report").exists()


def test_report_imports_neither_torch_nor_the_engine():
    code = (
        "import sys, ssmseg.report, ssmseg.report.plots, ssmseg.report.render\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('ssmseg.engine', "
        "'ssmseg.experiments', 'ssmseg.tasks'))]\nprint(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_finding_links_to_the_table_or_figure_that_shows_it(tree):
    import re

    _, result = tree
    html = (result.out / "report.html").read_text()
    ids = {i: tag for tag, i in re.findall(r'<(table|figure) id="([^"]+)"', html)}
    assert ids
    items = re.findall(r'<li class="(?:warning|info)">(.*?)</li>', html, re.DOTALL)
    assert len(items) == 2 * len(result.findings)  # the top list and each section's own
    for item in items:
        links = re.findall(r'<a href="#([^"]+)"', item)
        assert links and all(link in ids for link in links), item[:200]
    weak = next(i for i in items if "weak_classes" in i)
    assert {ids[x] for x in re.findall(r'<a href="#([^"]+)"', weak)} == {"table", "figure"}  # per class + confusion


def test_report_folders_follow_the_umask(tmp_path):
    import os

    run = shapes.write_run(tmp_path / "run", shapes.clean(), shapes.config(60, 3))
    old = os.umask(0o022)
    try:
        first = make_report([run]).out
        again = make_report([run]).out  # the same inputs: replaces its own report (publish sets the old aside)
    finally:
        os.umask(old)
    assert first == again
    for folder in (again, again / "plots"):
        assert folder.stat().st_mode & 0o777 == 0o755, oct(folder.stat().st_mode)
    assert (again / "report.md").stat().st_mode & 0o777 == 0o644
    assert not [p.name for p in run.iterdir() if p.name.startswith(".report.")]
