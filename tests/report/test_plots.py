"""Figures a researcher reads: the raw LR on a log axis, every line in a legend, chance lines, page width;
eval reports embed the confusion matrix and the panels eval wrote."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ssmseg.report import make_report, plots
from ssmseg.report.analysis import analyse_run
from ssmseg.report.runs import read_run
from tests.report import shapes


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """The curves figure of a run with a step LR schedule, kept open for inspection."""
    hist = shapes.lr_too_early(30, step=8)
    hist["schedule_changes"] = [{"epoch": 20, "schedule": "constant"}]
    a = analyse_run(read_run(shapes.write_run(tmp_path / "run", hist, shapes.config(30))))
    kept = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out, name, **k: kept.setdefault("fig", fig) and "plots/x.png")
    record = plots.curves(tmp_path, "x.png", [("run", a)], "run")
    yield kept["fig"], record, a
    plt.close(kept["fig"])


def _axis(fig, title):
    return next(ax for ax in fig.axes if ax.get_title() == title)


def test_lr_is_raw_on_a_log_axis_with_the_schedule_change(drawn):
    fig, _, a = drawn
    ax = _axis(fig, "lr")
    assert ax.get_yscale() == "log"
    (lr_line,) = [ln for ln in ax.get_lines() if ln.get_label() == "LR"]
    np.testing.assert_array_equal(lr_line.get_ydata(), a["curves"].cols["lr"])  # the step is not smoothed away
    assert "schedule change" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_every_line_is_in_a_legend_and_metric_panels_carry_chance(drawn):
    fig, _, a = drawn
    for ax in (ax for ax in fig.axes if ax.get_visible()):
        legend = ax.get_legend()
        assert legend is not None, ax.get_title()
        named = {t.get_text() for t in legend.get_texts()}
        labelled = {ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")}
        assert labelled <= named, ax.get_title()
        thick = [ln for ln in ax.get_lines() if ln.get_linewidth() >= 1.2]  # raw thin copies sit under them
        assert all(not ln.get_label().startswith("_") for ln in thick), ax.get_title()
    grad = _axis(fig, "gradient norm")
    assert {t.get_text() for t in grad.get_legend().get_texts()} >= {"epoch mean", "epoch max"}
    for metric in ("miou", "oa", "mean_f1", "kappa"):
        chance = [ln for ln in _axis(fig, metric).get_lines() if ln.get_label() == "chance"]
        assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(a["chance_lines"][metric])
    assert fig.get_size_inches()[0] == plots.WIDTH and plots.WIDTH * plots.DPI >= 1000
    assert min(t.get_fontsize() for ax in fig.axes for t in ax.get_xticklabels()) >= 10


def _png(path, colour):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.full((8, 8, 3), colour, dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def test_eval_reports_embed_the_confusion_matrix_and_the_panels_eval_wrote(tmp_path):
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    _png(seg / "vis" / "test_0.png", (200, 30, 30))
    _png(seg / "vis" / "confusion.png", (0, 0, 0))  # eval's own: the report draws its normalised one
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "metrics.json").write_text(json.dumps(shapes.recon_metrics()))
    _png(rec / "vis" / "examples.png", (30, 30, 200))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics.json").write_text(json.dumps(shapes.recon_metrics()))
    result = make_report([seg, rec, bare], out=tmp_path / "r")
    data = json.loads((result.out / "report.json").read_text())
    by = {(f["role"], f["title"].split(":")[0]) for f in data["figures"]}
    assert {("confusion", "seg"), ("image", "seg"), ("per_class_figure", "seg"), ("image", "rec")} <= by
    conf = next(f for f in data["figures"] if f["role"] == "confusion")
    assert conf["data"]["classes"][0] == "water" and np.allclose(np.sum(conf["data"]["normalised"], 1), 1)
    images = [f for f in data["figures"] if f["role"] == "image"]
    assert sorted(f["data"]["source"].split("/")[-1] for f in images) == ["examples.png", "test_0.png"]
    html = (result.out / "report.html").read_text()
    assert html.count("<img ") == len(data["figures"])
    assert any("eval wrote no example image" in m for m in result.missing)  # 'bare' has none
