"""A wall-clock budget (train.time_limit, a schedule fitted to it) and extending a finished cosine run."""

from __future__ import annotations

import json

import pytest
import yaml

from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine import loop
from ssmseg.engine.optim import EpochSchedule
from ssmseg.experiments.train import train
from tests.experiments.test_train import strip_timing, tiny


@pytest.fixture
def epoch_clock(monkeypatch):
    """The loop's clock advances by ``seconds[0]`` per training epoch (and nothing else)."""
    now, seconds = [0.0], [25.0]
    original = loop.run_epoch

    def timed(st, loader, cfg, rt, epoch, train):
        if train:
            now[0] += seconds[0]
        return original(st, loader, cfg, rt, epoch, train)

    monkeypatch.setattr(loop, "clock", lambda: now[0])
    monkeypatch.setattr(loop, "run_epoch", timed)
    return seconds


def _history(run):
    return json.loads((run / "history.json").read_text())


def test_time_limit_stops_after_the_boundary_past_it_and_resumes(synthetic_dataset, tmp_path, epoch_clock):
    full = train(tiny(synthetic_dataset, tmp_path, "full", train={"epochs": 5}))
    cut = train(tiny(synthetic_dataset, tmp_path, "cut", train={"epochs": 5, "time_limit": 1.0}))  # 25 s epochs
    assert cut.stop_reason == "time_limit" and len(cut.history) == 3  # 50 s < 60 s, 75 s >= 60 s: stop
    history = _history(cut.run_dir)
    assert history["stop_reason"] == "time_limit" and len(history["epochs"]) == 3
    assert ckpt.load(cut.run_dir / "checkpoints" / "latest.pt")["epoch"] == 2
    assert (cut.run_dir / "checkpoints" / "best.pt").is_file()
    resumed = train(
        tiny(synthetic_dataset, tmp_path, "cut", train={"epochs": 5, "time_limit": 10.0}), resume=cut.run_dir
    )
    assert resumed.stop_reason == "completed"
    assert strip_timing(resumed.history) == strip_timing(full.history)  # exactly the run that was never stopped


def test_fit_schedule_to_time_limit_ends_the_cosine_inside_the_budget(synthetic_dataset, tmp_path, epoch_clock):
    epoch_clock[0] = 30.0
    cfg = tiny(
        synthetic_dataset, tmp_path, "fit", train={"epochs": 10, "time_limit": 2.0, "fit_schedule_to_time_limit": True}
    )
    result = train(cfg)
    assert result.stop_reason == "completed" and len(result.history) == 4  # 120 s / 30 s per epoch
    four = EpochSchedule(cfg.schedule, cfg.optim.lr, 4)
    assert [r["lr"] for r in result.history] == pytest.approx([four.lr(e) for e in range(4)])
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 4
    history = _history(result.run_dir)
    assert history["schedule"]["epochs"] == 4 and history["run"]["epochs_planned"] == 4
    change = history["schedule"]["changes"][0]
    assert (change["epochs_from"], change["epochs_to"], change["why"]) == (10, 4, "train.fit_schedule_to_time_limit")
    assert ckpt.load(result.run_dir / "checkpoints" / "latest.pt")["config"]["train"]["epochs"] == 4


def test_the_schedule_is_fitted_at_the_first_epoch_after_the_linear_phase(synthetic_dataset, tmp_path, monkeypatch):
    # ssmu_net's linear phase runs the spectral head alone: 5 s epochs here, then 30 s with the spatial path
    now, original = [0.0], loop.run_epoch

    def timed(st, loader, cfg, rt, epoch, train):
        if train:
            now[0] += 5.0 if epoch < 2 else 30.0
        return original(st, loader, cfg, rt, epoch, train)

    monkeypatch.setattr(loop, "clock", lambda: now[0])
    monkeypatch.setattr(loop, "run_epoch", timed)
    cfg = tiny(
        synthetic_dataset,
        tmp_path,
        "linear",
        model={"name": "ssmu_net", "width": 8, "depth": 2, "d_state": 4, "n_filters": 4, "linear_epochs": 2},
        train={"epochs": 10, "time_limit": 2.0, "fit_schedule_to_time_limit": True},
    )
    result = train(cfg)
    # timed after epoch 3 (40 s gone, 80 s left at 30 s an epoch: 2 more), not after epoch 1 (10 x 5 s would "fit")
    assert result.stop_reason == "completed" and len(result.history) == 5 and now[0] <= 120.0
    change = _history(result.run_dir)["schedule"]["changes"][0]
    assert (change["at_epoch"], change["epochs_to"], change["timed_epoch"]) == (3, 5, 3)


def test_extending_a_finished_cosine_run_continues_at_the_final_rate(synthetic_dataset, tmp_path):
    cfg = tiny(synthetic_dataset, tmp_path, "ext", train={"epochs": 4})
    done = train(cfg)
    last = done.history[-1]["lr"]
    longer = tiny(synthetic_dataset, tmp_path, "ext", train={"epochs": 6})
    extended = train(longer, resume=done.run_dir)
    lrs = [r["lr"] for r in extended.history]
    assert lrs[:4] == [r["lr"] for r in done.history]
    assert lrs[4] == pytest.approx(last) and lrs[5] == pytest.approx(last)  # no jump at the first new epoch
    stages = _history(done.run_dir)["schedule"]["stages"]
    assert [(s["kind"], s["first_epoch"], s["last_epoch"]) for s in stages] == [("schedule", 1, 4), ("continue", 5, 6)]
    assert stages[1]["lr_first"] == pytest.approx(last)


def test_restart_runs_the_schedule_anew_over_the_added_epochs():
    from ssmseg.config.schema import ScheduleConfig

    c = ScheduleConfig(name="cosine", warmup_epochs=1, warmup_start_factor=0.1, min_lr=0.0)
    sched = EpochSchedule(c, 1.0, 8, extend="restart")
    sched.saved_epochs = 4  # restored from a finished 4-epoch run
    assert sched.resumed(4) is not None
    assert sched.lr(3) == pytest.approx(EpochSchedule(c, 1.0, 4).lr(3))  # the first stage is unchanged
    assert [sched.lr(e) for e in range(4, 8)] == pytest.approx([EpochSchedule(c, 1.0, 4).lr(e) for e in range(4)])
    state = sched.state_dict()
    again = EpochSchedule(c, 1.0, 8)
    again.load_state_dict(state)
    assert [again.lr(e) for e in range(8)] == [sched.lr(e) for e in range(8)]
    assert [s["kind"] for s in again.record()["stages"]] == ["schedule", "restart"]


def test_a_run_stretched_before_its_schedule_ended_is_recorded():
    from ssmseg.config.schema import ScheduleConfig

    sched = EpochSchedule(ScheduleConfig(name="cosine"), 1.0, 8)
    sched.saved_epochs = 4
    assert "stretched" in sched.resumed(2)
    assert sched.record()["changes"][0]["epochs_to"] == 8 and len(sched.stages) == 1
