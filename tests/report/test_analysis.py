"""Stages and findings on histories with known shapes; none fires on a clean run; direction-aware rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssmseg.report.analysis import analyse_cv, analyse_eval, analyse_run, analyse_sweep
from ssmseg.report.chance import chance_baselines, metrics_from_confusion
from ssmseg.report.compare import compare
from ssmseg.report.render_sections import summary_rows
from ssmseg.report.runs import read_cv, read_eval, read_run, read_sweep
from ssmseg.report.series import fmt, smooth
from tests.report import shapes


def analyse(tmp_path, hist, **cfg):
    n, warm = len(hist["epochs"]), hist["run"]["warmup_epochs"]
    folder = shapes.write_run(tmp_path / "run", hist, shapes.config(n, warm, hist["monitor"], hist["mode"], **cfg))
    return analyse_run(read_run(folder))


def rules(a):
    return sorted(f["rule"] for f in a["findings"])


def stage(a, name):
    return next(s for s in a["stages"] if s["stage"] == name)


@pytest.mark.parametrize("shape", [shapes.clean, shapes.loss_clean], ids=["max-mode", "min-mode"])
def test_clean_convergence_fires_nothing_and_finds_every_stage(tmp_path, shape):
    a = analyse(tmp_path, shape())
    assert a["findings"] == []
    names = [s["stage"] for s in a["stages"]]
    assert names[: len(names)] == [n for n in ("warmup", "fast learning", "steady climb", "peak") if n in names]
    assert {"fast learning", "steady climb", "peak"} <= set(names)
    peak = stage(a, "peak")
    assert peak["first_epoch"] <= a["summary"]["best_epoch"] <= peak["last_epoch"] == 60  # a plateau to the end
    if shape is shapes.clean:
        assert stage(a, "warmup")["first_epoch"] == 1 and stage(a, "warmup")["last_epoch"] == 3
        assert stage(a, "fast learning")["first_epoch"] == 4
    covered = sum(s["epochs"] for s in a["stages"])
    assert covered == 60


def test_clean_run_summary_numbers(tmp_path):
    hist = shapes.clean()
    a = analyse(tmp_path, hist)
    s = a["summary"]
    b = hist["best"]["epoch"]
    rec = hist["epochs"][b - 1]
    assert s["best_epoch"] == b and s["best_value"] == pytest.approx(rec["val/miou"])
    assert s["train_at_best"] == pytest.approx(rec["train/miou"])
    assert s["gap_at_best"] == pytest.approx(rec["train/miou"] - rec["val/miou"])
    assert s["lr_at_best"] == pytest.approx(rec["lr"])
    assert s["epochs_trained"] == 60 and s["epochs_planned"] == 60 and s["stop_reason"] == "completed"
    assert s["wall_seconds"] == pytest.approx(60 * 2.5) and s["peak_memory_mb"] == 812.5
    assert s["parameters"] == 123456 and s["scan_backend"] == "cpu" and s["device"] == "cpu"


def test_overfitting_after_epoch_k(tmp_path):
    a = analyse(tmp_path, shapes.overfit(k=25))
    assert rules(a) == ["degradation_after_best", "overfitting"]
    over = next(f for f in a["findings"] if f["rule"] == "overfitting")
    assert 20 <= over["evidence"]["onset_epoch"] <= 28
    assert over["evidence"]["gap_final"] > over["evidence"]["gap_at_best"]
    assert a["summary"]["best_epoch"] == 25
    late = stage(a, "decline")
    assert 25 < late["first_epoch"] <= 32 and late["last_epoch"] == 60
    assert late["mean_gap"] > stage(a, "peak")["mean_gap"]


def test_a_run_that_kept_its_last_epoch_reports_the_monitored_best_and_what_it_kept(tmp_path):
    hist = shapes.overfit(k=25)
    hist["select"], hist["best"] = "last", {"value": hist["epochs"][-1]["val/miou"], "epoch": 60}
    a = analyse(tmp_path, hist)
    s = a["summary"]
    assert s["best_epoch"] == 25 and s["select"] == "last" and not a["missing"]
    assert rules(a) == ["degradation_after_best", "overfitting"]
    worse = next(f for f in a["findings"] if f["rule"] == "degradation_after_best")
    assert "best.pt keeps the last epoch (train.select: last)" in worse["message"]
    rows = dict((r[0], r[1]) for r in summary_rows(a))
    assert rows["checkpoint kept (best.pt)"] == "the last epoch (train.select: last)"


def test_overfitting_in_a_loss_monitored_with_mode_min(tmp_path):
    a = analyse(tmp_path, shapes.loss_overfit(k=25))
    assert rules(a) == ["degradation_after_best", "overfitting"]
    assert a["summary"]["best_epoch"] == 25
    deg = next(f for f in a["findings"] if f["rule"] == "degradation_after_best")
    assert deg["evidence"]["final_mean"] > deg["evidence"]["smoothed_best"]  # worse = higher for a loss
    assert "validation − train" in next(f for f in a["findings"] if f["rule"] == "overfitting")["message"]


def test_undertrained_run_is_still_improving(tmp_path):
    a = analyse(tmp_path, shapes.undertrained())
    assert rules(a) == ["still_improving"]
    f = a["findings"][0]
    assert f["evidence"]["best_epoch"] == 30 and f["evidence"]["gain"] > 0 and "train longer" in f["message"]
    assert a["stages"][-1]["stage"] == "peak" and a["stages"][-1]["last_epoch"] == 30
    assert not any(s["stage"] in ("decline", "plateau") for s in a["stages"])


def test_divergence_names_the_first_bad_epoch(tmp_path):
    a = analyse(tmp_path, shapes.divergent(at=21))
    assert rules(a) == ["divergence"]
    f = a["findings"][0]
    assert f["evidence"]["non_finite"]["train/loss"] == 21 and f["evidence"]["stop_reason"] == "diverged"
    assert "NaN from epoch 21" in f["message"]


def test_loss_blowup_without_nan_is_divergence(tmp_path):
    hist = shapes.clean(40, warmup=0)
    for i, rec in enumerate(hist["epochs"][30:]):
        rec["train/loss"] = 2.0 * (i + 1)
    hist["stop_reason"] = "completed"
    a = analyse(tmp_path, hist)
    assert "divergence" in rules(a)
    assert a["findings"][0]["evidence"]["blowup"]["last"] == 20.0


def test_lr_decayed_before_the_metric_plateaued(tmp_path):
    a = analyse(tmp_path, shapes.lr_too_early(step=8))
    assert "lr_decayed_early" in rules(a)
    f = next(f for f in a["findings"] if f["rule"] == "lr_decayed_early")
    assert f["evidence"]["decayed_epoch"] == 9 and f["evidence"]["share_of_gain_then"] < 0.75
    assert set(rules(a)) <= {"lr_decayed_early", "still_improving"}


def test_metric_at_chance_from_class_counts(tmp_path):
    a = analyse(tmp_path, shapes.at_chance())
    assert "at_chance" in rules(a)
    ch = a["chance"]
    assert ch["metric"] == "miou" and ch["majority_class"]["class"] == "water"
    assert ch["majority_class"]["value"] == pytest.approx(5000 / 11500 / 5)
    assert ch["priors_from"] == "class_counts_train"
    # one plateau: a flat noisy curve has no learning stages (and no peak)
    assert [s["stage"] for s in a["stages"]] == ["plateau"]


def test_chance_baseline_is_for_the_metric_in_use(tmp_path):
    a = analyse(tmp_path, shapes.loss_clean())
    assert a["chance"] is None and any("no chance baseline for loss" in m for m in a["missing"])
    hist = shapes.clean()
    hist["monitor"] = "val/oa"
    a = analyse(tmp_path / "oa", hist)
    assert a["chance"]["metric"] == "oa"
    assert a["chance"]["majority_class"]["value"] == pytest.approx(5000 / 11500)  # OA, not mIoU


def test_low_and_close(tmp_path):
    a = analyse(tmp_path, shapes.low_and_close())
    assert rules(a) == ["low_and_close"]


def test_grad_norm_spike(tmp_path):
    a = analyse(tmp_path, shapes.grad_spike(at=30))
    assert rules(a) == ["grad_norm_spikes"]
    assert a["findings"][0]["evidence"]["epochs"] == [30]


def test_chance_matches_the_evaluator_definition():
    cm = np.array([[5, 1], [2, 0]])
    m = metrics_from_confusion(cm)
    assert m["oa"] == pytest.approx(5 / 8)
    assert m["miou"] == pytest.approx((5 / 8 + 0 / 3) / 2)


def test_chance_baselines_need_counts(tmp_path):
    hist = shapes.clean()
    del hist["run"]["class_counts_val"]
    run = read_run(shapes.write_run(tmp_path / "r", hist))
    base, why = chance_baselines("miou", run)
    assert base is None and "class_counts_val" in why


def test_smooth_ignores_nan_and_keeps_length():
    y = np.array([1.0, np.nan, 3.0, 4.0, np.nan])
    s = smooth(y, 3)
    assert len(s) == 5 and s[1] == pytest.approx(2.0) and s[4] == pytest.approx(4.0)


def test_fmt():
    assert fmt(None) == "missing" and fmt(math.nan) == "NaN" and fmt(3.0) == "3" and fmt(0.123456) == "0.1235"


def test_compare_lists_only_differing_keys_and_changes(tmp_path):
    prev = read_run(shapes.write_run(tmp_path / "a", shapes.clean(), shapes.config(60, 3)))
    cur = read_run(shapes.write_run(tmp_path / "b", shapes.overfit(), shapes.config(60, 3, optim__lr=3e-3)))
    c = compare(cur, analyse_run(cur), prev, analyse_run(prev))
    assert c["config_diff"] == [{"key": "optim.lr", "previous": 1e-3, "current": 3e-3}]
    row = next(r for r in c["headline"] if r["key"] == "best_value")
    assert row["change"] == pytest.approx(row["current"] - row["previous"])
    assert row["relative"] == pytest.approx(row["change"] / row["previous"])


def test_compare_refuses_values_of_different_metrics(tmp_path):
    prev = read_run(shapes.write_run(tmp_path / "a", shapes.loss_clean(), shapes.config(60, 0, "val/loss", "min")))
    cur = read_run(shapes.write_run(tmp_path / "b", shapes.clean(), shapes.config(60, 3)))
    c = compare(cur, analyse_run(cur), prev, analyse_run(prev))
    assert not any(r["key"] == "best_value" for r in c["headline"])
    assert any("different metrics" in n for n in c["notes"])


def test_cv_spread_flagged_only_when_large(tmp_path):
    wide = analyse_cv(read_cv(shapes.write_cv(tmp_path / "wide", [0.5, 0.7, 0.9])))
    spread = {f["evidence"]["metric"] for f in wide["findings"] if f["rule"] == "cv_spread"}
    assert spread == {"heldout/miou", "heldout/oa"}  # not val/*: the selection values are not the score
    tight = analyse_cv(read_cv(shapes.write_cv(tmp_path / "tight", [0.70, 0.71, 0.72])))
    assert tight["findings"] == []
    assert tight["mean"]["heldout/miou"] == pytest.approx(0.71)


def test_cv_leads_with_held_out_scores_not_the_selection_values(tmp_path):
    # held-out scores tight, the validation values that selected the epochs spread out: the old report led with
    # val/miou and warned about its spread; the held-out truth is what counts
    cv = shapes.write_cv(tmp_path / "cv", [0.70, 0.71, 0.72], val_values=[0.5, 0.8, 0.95])
    a = analyse_cv(read_cv(cv))
    assert a["headline"] == "heldout/miou" and a["metrics"][:2] == ["heldout/miou", "heldout/oa"]
    assert a["findings"] == []
    from ssmseg.report import cv_headline

    line = cv_headline(a)
    assert line.startswith("cv: heldout/miou 0.71 ± 0.01 over 3 folds") and "val/miou 0.75 selected the epoch" in line


def test_cv_without_summary_uses_fold_histories(tmp_path):
    cv = read_cv(shapes.write_cv(tmp_path / "cv", [0.7, 0.72], with_summary=False))
    a = analyse_cv(cv)
    assert len(a["folds"]) == 2 and any("no cv_summary.json" in m for m in a["missing"])
    assert a["mean"]["val/miou"] == pytest.approx(0.74)
    assert a["headline"] == "val/miou" and any("no held-out scores" in m for m in a["missing"])


def test_eval_weak_classes_and_chance(tmp_path):
    folder = tmp_path / "ev"
    folder.mkdir()
    import json

    (folder / "metrics.json").write_text(json.dumps(shapes.seg_metrics(weak=True)))
    a = analyse_eval(read_eval(folder))
    assert [f["rule"] for f in a["findings"]] == ["weak_classes"]
    assert a["weakest"][0]["class"] == "bare" and a["weakest"][0]["confused_with"] == "crop"
    (folder / "metrics.json").write_text(json.dumps(shapes.seg_metrics(weak=False)))
    assert analyse_eval(read_eval(folder))["findings"] == []
    m = shapes.seg_metrics(weak=False)
    m["kappa"] = 0.005
    (folder / "metrics.json").write_text(json.dumps(m))
    f = analyse_eval(read_eval(folder))["findings"]
    assert [(x["rule"], x["evidence"]["metric"]) for x in f] == [("at_chance", "kappa")]


def test_an_eval_is_read_by_what_its_metrics_hold_not_by_the_task_it_names(tmp_path):
    import json

    folder = tmp_path / "ev"
    folder.mkdir()
    older = {k: v for k, v in shapes.recon_metrics().items() if k != "task"}  # a file that records no task
    (folder / "metrics.json").write_text(json.dumps(older))
    a = analyse_eval(read_eval(folder))
    assert (a["layout"], a["task"], len(a["rows"])) == ("per_fraction", "reconstruction", 3)
    assert "psnr_unobserved" in a["columns"] and "headline" not in a
    (folder / "metrics.json").write_text(json.dumps({**shapes.seg_metrics(weak=False), "task": "some_new_task"}))
    a = analyse_eval(read_eval(folder))
    assert (a["layout"], a["task"]) == ("per_class", "some_new_task") and a["headline"]["miou"] > 0
    (folder / "metrics.json").write_text(json.dumps(shapes.seg_metrics(weak=False)))
    assert analyse_eval(read_eval(folder))["task"] == "segmentation"


def test_sweep_conclusions_come_from_sweep_json_not_recomputed(tmp_path):
    import json

    folder = tmp_path / "sw"
    folder.mkdir()
    data = shapes.sweep(baseline_psnr=31.0)  # no setting beats the baseline: the old report added its own finding
    data["conclusions"] = [
        "best setting: euler, 1 step",
        {"rule": "baseline", "message": "idw wins", "severity": "warning"},
    ]
    (folder / "sweep.json").write_text(json.dumps(data))
    a = analyse_sweep(read_sweep(folder))
    assert a["best"]["solver"] == "euler" and a["best"]["nfe"] == 1
    assert [(f["rule"], f["severity"], f["message"]) for f in a["findings"]] == [
        ("sweep", "info", "best setting: euler, 1 step"),
        ("sweep: baseline", "warning", "idw wins"),
    ]
    data["conclusions"] = []
    (folder / "sweep.json").write_text(json.dumps(data))
    a = analyse_sweep(read_sweep(folder))
    assert a["findings"] == [] and any("no conclusions" in m for m in a["missing"])
