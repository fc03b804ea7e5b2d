"""Policy around resume and cv that must hold whatever the model learns: extending a run continues it exactly,
a shorter resume needs --force, raising the patience of an early-stopped run goes on, cv reports the
selected epoch, and fold results of an older protocol are trained again."""

from __future__ import annotations

import json

import pytest
import torch

from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError
from ssmseg.experiments import cv
from ssmseg.experiments.train import RunResult, train
from tests.experiments.test_train import strip_timing, tiny


def constant(dataset, out, name, epochs, **over):
    """A run whose learning rate does not depend on train.epochs: a 2-epoch run extended to 4 must be the
    4-epoch run."""
    return tiny(
        dataset,
        out,
        name,
        train={"epochs": epochs},
        schedule={"name": "constant", "warmup_epochs": 1},
        optim={"lr": 0.003},
        **over,
    )


@pytest.fixture(scope="module")
def extended(synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("extend")
    straight = train(constant(synthetic_dataset, out, "straight", 4))
    train(constant(synthetic_dataset, out, "ext", 2))
    resumed = train(constant(synthetic_dataset, out, "ext", 4), resume=out / "ext")
    return out, straight, resumed


def test_extending_a_run_keeps_its_optimizer_state_and_learning_rate(extended):
    out, straight, resumed = extended
    assert [r["lr"] for r in resumed.history] == pytest.approx([0.0003, 0.003, 0.003, 0.003])  # no second warmup
    assert strip_timing(resumed.history) == strip_timing(straight.history)  # Adam's moments carried over
    a = ckpt.load(out / "straight" / "checkpoints" / "latest.pt")
    b = ckpt.load(out / "ext" / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(
        torch.equal(x, y)
        for x, y in zip(a["optimizer"]["state"][0].values(), b["optimizer"]["state"][0].values(), strict=True)
    )


def test_resuming_with_fewer_epochs_than_trained_needs_force(extended, synthetic_dataset):
    out, _, _ = extended
    with pytest.raises(ConfigError, match=r"train\.epochs.*--force"):
        train(constant(synthetic_dataset, out, "ext", 2), resume=out / "ext")
    history = json.loads((out / "ext" / "history.json").read_text())
    assert len(history["epochs"]) == 4  # nothing was touched


def test_raising_the_patience_of_an_early_stopped_run_goes_on(synthetic_dataset, tmp_path):
    stop = {"epochs": 6, "patience": 1, "min_delta": 10.0}
    first = train(tiny(synthetic_dataset, tmp_path, "early", train=stop))
    assert len(first.history) == 2 and first.stop_reason.startswith("early stop")
    from ssmseg.experiments.resume import RunFinished

    with pytest.raises(RunFinished, match="stopped early"):  # the same patience: nothing to do
        train(tiny(synthetic_dataset, tmp_path, "early", train=stop), resume=tmp_path / "early")
    more = train(
        tiny(synthetic_dataset, tmp_path, "early", train={**stop, "patience": 3}), resume=tmp_path / "early", force=True
    )
    assert len(more.history) > 2 and more.history[:2] == first.history


class NoScore:
    scores_heldout = False


def test_cv_reports_the_selected_epochs_validation_metrics_not_the_last(synthetic_dataset, tmp_path):
    history = [{"epoch": e, "lr": 0.1, "val/loss": 1.0 / e, "val/miou": m} for e, m in ((1, 0.2), (2, 0.7), (3, 0.4))]
    result = RunResult(tmp_path, history, {"value": 0.7, "epoch": 2}, "completed", "val/miou")
    cfg = tiny(synthetic_dataset, tmp_path, "cvrow")
    row = cv.fold_row(cfg, result, synthetic_dataset, 0, NoScore())
    assert row["best_epoch"] == 2 and row["val/miou"] == 0.7 and row["val/loss"] == 0.5
    summary = cv.summarise([row, {**row, "fold": 1}], "val/miou", False, "segmentation")
    assert summary["mean"]["val/miou"] == 0.7


@pytest.mark.parametrize("old", [{"fold": 0, "best_epoch": 1, "val/miou": 0.9}, {"format": 1, "fold": 0}])
def test_cv_trains_again_a_fold_saved_under_an_older_protocol(tmp_path, old):
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps({**old, "monitor": "val/miou"}))
    assert cv._done(saved) is None  # rows of the optimistic protocol (epoch chosen on the fold) are not reused
    saved.write_text(json.dumps({**old, "format": cv.ROW_FORMAT, "monitor": "val/miou"}))
    assert cv._done(saved)["fold"] == 0
    assert cv.ROW_FORMAT >= 2
