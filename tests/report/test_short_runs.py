"""Short, noisy runs as real users make them first: judged as short, stages against their noise, chance on
the scored pixels. Each history here made the old rules say something wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.report import make_report
from ssmseg.report.analysis import analyse_run
from ssmseg.report.runs import read_run
from tests.report import shapes

FAST = {"data__max_patches": 50, "data__batch_size": 8}  # the fast preset: 50 patches, 7 steps an epoch


def analyse(tmp_path, hist, **cfg):
    n, warm = len(hist["epochs"]), hist["run"]["warmup_epochs"]
    folder = shapes.write_run(tmp_path / "run", hist, shapes.config(n, warm, hist["monitor"], hist["mode"], **cfg))
    return analyse_run(read_run(folder))


def flat_low(n: int = 10) -> dict:
    """Rises in two epochs, then flat at 0.30 with train close by (the old low_and_close fired on it)."""
    rng = np.random.default_rng(5)
    val = np.concatenate([[0.2, 0.27], 0.30 + rng.normal(0, 0.004, n - 2)])
    train = val + 0.01 + rng.normal(0, 0.004, n)
    run = {"train_items": 90, "val_items": 27, "val_items_total": 27}
    return shapes.history(val, train, shapes.cosine_lr(n, peak=2e-3, warmup=1), warmup=1, run=run)


def test_summary_states_patches_steps_and_validation_size(tmp_path):
    s = analyse(tmp_path, flat_low(), **FAST)["summary"]
    assert (s["patches_per_epoch"], s["steps_per_epoch"], s["optimizer_steps"]) == (50, 7, 70)
    assert (s["val_items"], s["val_items_total"], s["val_subset"]) == (27, 27, False)
    accumulated = analyse(tmp_path / "acc", flat_low(), **FAST, optim__accumulate=2)["summary"]
    assert accumulated["steps_per_epoch"] == 4  # 7 batches, an optimiser step every 2 (and the last)
    unknown = analyse(tmp_path / "old", shapes.clean(20, 0))["summary"]  # no run.train_items
    assert unknown["steps_per_epoch"] is None and unknown["optimizer_steps"] is None


def test_a_few_dozen_steps_is_too_short_to_judge_never_too_little_capacity(tmp_path):
    a = analyse(tmp_path, flat_low(), **FAST)
    assert [f["rule"] for f in a["findings"]] == ["too_short"]
    (f,) = a["findings"]
    assert "70 optimiser steps (7 per epoch x 10 epochs)" in f["message"] and "capacity (model" not in f["message"]
    assert f["evidence"]["optimizer_steps"] == 70
    # the same curve after 2,000 steps (200 per epoch) is judged as a capacity or regularisation limit
    long = flat_low()
    long["run"]["train_items"] = 1600
    b = analyse(tmp_path / "long", long, data__batch_size=8)
    assert [f["rule"] for f in b["findings"]] == ["low_and_close"] and "too little capacity" in b["findings"][0][
        "message"
    ]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_still_improving_fires_under_five_epochs(tmp_path, n):
    val = np.array([0.5, 0.6, 0.68, 0.74])[:n]
    hist = shapes.history(val, val + 0.02, shapes.cosine_lr(n), run={"train_items": 800, "val_items": 9})
    a = analyse(tmp_path, hist, **FAST)
    f = next(f for f in a["findings"] if f["rule"] == "still_improving")
    assert f["message"].startswith("undertrained, still learning") and f"{n} epochs" in f["message"]
    assert f["evidence"]["best_epoch"] == n
    flat = shapes.history(np.array([0.5, 0.6, 0.6, 0.6])[:n], np.full(n, 0.62), shapes.cosine_lr(n))
    assert n == 2 or "still_improving" not in {f["rule"] for f in analyse(tmp_path / "flat", flat)["findings"]}


def test_stages_are_named_against_the_noise(tmp_path):
    # rose from 0.150 to 0.203 by zigzags as large as the rise: the old stages called epochs 2-10 "peak"
    val = np.array([0.150, 0.185, 0.160, 0.195, 0.170, 0.200, 0.180, 0.203, 0.185, 0.200])
    a = analyse(tmp_path, shapes.history(val, val + 0.02, shapes.cosine_lr(10, warmup=1), warmup=1))
    assert [(s["stage"], s["first_epoch"], s["last_epoch"]) for s in a["stages"]] == [
        ("warmup", 1, 1),
        ("plateau", 2, 10),
    ]
    # a plateau after a real rise is a plateau, and the peak stays around the best epoch
    b = analyse(tmp_path / "b", flat_low(), **FAST)
    names = [(s["stage"], s["first_epoch"], s["last_epoch"]) for s in b["stages"]]
    peak = next(s for s in b["stages"] if s["stage"] == "peak")
    assert peak["first_epoch"] <= b["summary"]["best_epoch"] <= peak["last_epoch"] and peak["epochs"] <= 4, names
    assert names[-1][0] == "plateau" and "decline" not in [n for n, *_ in names]


def test_chance_baselines_on_the_pixels_actually_scored(tmp_path):
    hist = shapes.clean(30, 0)
    hist["run"].update(val_items=27, val_items_total=100)
    a = analyse(tmp_path, hist)
    assert a["chance"]["exact"] is False and any("scored 27 of its 100 patches" in m for m in a["missing"])
    hist["run"]["class_counts_val_scored"] = [100, 0, 0, 0, 300]  # the subset: 'bare' dominates it
    b = analyse(tmp_path / "b", hist)
    assert b["chance"]["exact"] is True and b["chance"]["pixels_from"] == "class_counts_val_scored"
    assert b["chance"]["majority_class"]["value"] == pytest.approx(100 / 400 / 2)  # water on 100 of 400; 2 present
    assert not any("scored 27" in m for m in b["missing"])
    hist["run"].update(val_items=100, class_counts_val_scored=None)  # every patch scored: the split's counts
    assert analyse(tmp_path / "c", hist)["chance"]["exact"] is True
    del hist["run"]["val_items"]  # unknown: not claimed either way
    assert analyse(tmp_path / "d", hist)["chance"]["exact"] is None


def test_all_nan_history_is_judged_not_called_clean(tmp_path):
    hist = shapes.clean(8, 0)
    for rec in hist["epochs"]:
        for k in list(rec):
            if k.startswith(("train/", "val/")):
                rec[k] = None
    hist["best"] = {"value": None, "epoch": None}
    run = shapes.write_run(tmp_path / "nan", hist, shapes.config(8))
    result = make_report([run], out=tmp_path / "r")
    rules = [f["rule"] for f in result.findings]
    assert rules[:2] == ["no_values", "divergence"]
    for name in ("report.md", "report.html"):
        assert "none of the rules fired" not in (result.out / name).read_text()
    nothing = shapes.write_run(tmp_path / "empty", None, shapes.config(8))
    md = (make_report([nothing], out=tmp_path / "r2").out / "report.md").read_text()
    assert "none of the rules fired" not in md and "nothing could be judged" in md


@pytest.mark.parametrize("name", ["history.json", "metrics.json", "sweep.json", "cv_summary.json"])
def test_an_empty_json_object_is_a_clear_error(tmp_path, name):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / name).write_text("{}")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "x"), "--out", str(tmp_path / "r")])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "an empty object" in lines[0] and name in lines[0] and not (tmp_path / "r").exists()


def test_time_limit_and_schedule_change_are_shown_and_optional(tmp_path):
    hist = shapes.clean(20, 0)
    hist["stop_reason"] = "time_limit"
    hist["schedule_changes"] = [{"epoch": 11, "kind": "extension", "schedule": "constant", "lr": 1e-5}]
    run = shapes.write_run(tmp_path / "run", hist, shapes.config(20))
    result = make_report([run], out=tmp_path / "r")
    md = (result.out / "report.md").read_text()
    assert "time limit (train.time_limit reached" in md and "**LR schedule changes recorded in history.json**" in md
    assert "| 11 | extension | constant | 1e-05 |" in md
    data = json.loads((result.out / "report.json").read_text())
    assert data["runs"][0]["schedule_changes"][0]["epoch"] == 11
    plain = make_report([shapes.write_run(tmp_path / "plain", shapes.clean(20, 0), shapes.config(20))])
    assert "schedule changes" not in (plain.out / "report.md").read_text()


def test_an_extension_recorded_in_the_schedule_block_is_a_schedule_change(tmp_path):
    hist = shapes.clean(30, 0)
    stages = [
        {"stage": 1, "kind": "schedule", "first_epoch": 1, "last_epoch": 20, "lr_first": 1e-3, "lr_last": 1e-6},
        {"stage": 2, "kind": "continue", "first_epoch": 21, "last_epoch": 30, "lr_first": 1e-6, "lr_last": 1e-6},
    ]
    changes = [{"at_epoch": 2, "epochs_from": 40, "epochs_to": 20, "why": "train.fit_schedule_to_time_limit"}]
    hist["schedule"] = {"name": "cosine", "epochs": 30, "stages": stages, "changes": changes}
    a = analyse(tmp_path, hist)
    assert [(c["epoch"], c["change"]) for c in a["schedule_changes"]] == [
        (21, "stage 2: continue"),
        (2, "train.epochs 40 -> 20"),
    ]
    hist["schedule"] = {"name": "cosine", "epochs": 30, "stages": stages[:1], "changes": []}  # nothing changed
    assert analyse(tmp_path / "plain", hist)["schedule_changes"] == []
