"""The engine without segmentation: a few-line regression task trains through the loop, minimises its
monitor, resumes exactly, records a self-describing history and stops on divergence."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssmseg.config import build_config
from ssmseg.data.sampling import EpochSampler
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine import loop
from ssmseg.engine.ema import WeightEMA
from ssmseg.engine.loop import DivergedError, FitState, fit, restore
from ssmseg.engine.optim import EpochSchedule, build_optimizer
from ssmseg.engine.precision import make_scaler
from ssmseg.engine.runtime import Runtime
from ssmseg.engine.task import StepOut, Task
from ssmseg.errors import ConfigError
from ssmseg.experiments.train import with_task_defaults


class ToyRegression:
    """y = x . w + noise on random tensors; validation statistics are additive (sum of squares, count)."""

    name, monitor, mode, metric_names = "toy", "val/mse", "min", ("mse",)

    def __init__(self, nan_after: int | None = None, nan_in_validation: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(96, 4, generator=g)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(96, generator=g)
        self.train_set = [{"x": x[i], "y": y[i]} for i in range(64)]
        self.val_set = [{"x": x[i], "y": y[i]} for i in range(64, 96)]
        self.nan_after, self.steps, self.nan_in_validation = nan_after, 0, nan_in_validation

    def build_model(self) -> nn.Module:
        return nn.Linear(4, 1)

    def _stats(self, model, batch) -> StepOut:
        err = model(batch["x"])[:, 0] - batch["y"]
        loss = (err**2).mean()
        stats = {"sse": (err.detach() ** 2).sum().double(), "n": torch.tensor(float(len(err)), dtype=torch.float64)}
        return StepOut(loss, len(err), stats)

    def training_step(self, model, batch, gen) -> StepOut:
        self.steps += 1
        out = self._stats(model, batch)
        if self.nan_after is not None and self.steps > self.nan_after:
            out.loss = out.loss * float("nan")
        return out

    def validation_step(self, model, batch) -> StepOut:
        out = self._stats(model, batch)
        if self.nan_in_validation:
            out.loss = out.loss * float("nan")
        return out

    def metrics(self, stats) -> dict[str, float]:
        return {"mse": float(stats["sse"] / stats["n"])}

    def examples(self, model, batch) -> dict[str, torch.Tensor]:
        return {"val/example": torch.zeros(3, 4, 4, dtype=torch.uint8)}

    def checkpoint_meta(self) -> dict:
        return {"toy": True}

    def run_info(self, scored=None) -> dict:
        return {"dataset": "random tensors"}


def interrupt_training_at(monkeypatch, epoch: int):
    """Make the loop raise KeyboardInterrupt when training epoch ``epoch`` (0-based) starts; returns a function
    that puts the real loop back (for the resumed run)."""
    original = loop.run_epoch

    def run_epoch(st, loader, cfg, rt, at, train):
        if at == epoch and train:
            raise KeyboardInterrupt
        return original(st, loader, cfg, rt, at, train)

    monkeypatch.setattr(loop, "run_epoch", run_epoch)
    return lambda: monkeypatch.setattr(loop, "run_epoch", original)


def _fit(task, run_dir, epochs=6, state=None, ema=None):
    """``task`` trained through the engine's loop; ``ema``: train.ema's decay (None: off)."""
    cfg = build_config(
        explicit={
            "train": {"epochs": epochs, "ema": ema},
            "optim": {"lr": 0.1, "grad_clip": None},
            "data": {"batch_size": 8},
            "schedule": {"name": "constant"},
            "runtime": {"device": "cpu"},
        }
    )
    cfg = with_task_defaults(cfg, task)
    torch.manual_seed(0)
    model = task.build_model()
    schedule = EpochSchedule(cfg.schedule, cfg.optim.lr, epochs, cfg.train.mode)
    scaler = make_scaler(torch.device("cpu"), "fp32")
    average = None if ema is None else WeightEMA(model, ema)
    st = FitState(
        task, model, build_optimizer(cfg.optim, model), schedule, scaler, {"toy": True}, task.run_info(), ema=average
    )
    if state is not None:
        restore(st, state)
    train = DataLoader(task.train_set, batch_size=8, sampler=EpochSampler(64, 0))
    val = DataLoader(task.val_set, batch_size=8, sampler=EpochSampler(32, 0, shuffle=False))
    result = fit(st, train, val, cfg, Runtime(torch.device("cpu")), run_dir)
    return st, result


def test_a_task_of_a_few_lines_is_a_task():
    assert isinstance(ToyRegression(), Task)


def test_regression_minimises_its_monitor_and_writes_a_self_describing_history(tmp_path):
    st, result = _fit(ToyRegression(), tmp_path)
    mse = [r["val/mse"] for r in st.history]
    assert mse[-1] < 0.1 * mse[0]
    assert result["best"]["value"] == min(mse) and result["best"]["epoch"] == mse.index(min(mse)) + 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert (history["format_version"], history["task"], history["monitor"], history["mode"]) == (
        2,
        "toy",
        "val/mse",
        "min",
    )
    assert history["stop_reason"] == "completed" and history["run"]["dataset"] == "random tensors"
    rec = history["epochs"][0]
    assert {"grad_norm_mean", "grad_norm_max", "val_seconds", "peak_memory_mb", "train/mse", "val/loss"} <= set(rec)
    assert 0 < rec["grad_norm_mean"] <= rec["grad_norm_max"] and rec["peak_memory_mb"] > 10
    assert ckpt.load(tmp_path / "checkpoints" / "best.pt")["toy"] is True


def test_regression_resumes_exactly(tmp_path, monkeypatch):
    full, _ = _fit(ToyRegression(), tmp_path / "full")
    restore_loop = interrupt_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _fit(ToyRegression(), tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "history.json").read_text())["stop_reason"] == "interrupted"
    restore_loop()
    resumed, _ = _fit(
        ToyRegression(), tmp_path / "cut", state=ckpt.load(tmp_path / "cut" / "checkpoints" / "latest.pt")
    )
    machine = ("seconds", "val_seconds", "samples_per_s", "peak_memory_mb")
    assert [{k: v for k, v in r.items() if k not in machine} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in machine} for r in full.history
    ]
    a = ckpt.load(tmp_path / "full" / "checkpoints" / "latest.pt")["model"]
    b = ckpt.load(tmp_path / "cut" / "checkpoints" / "latest.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_is_not_touched_again(tmp_path):
    _fit(ToyRegression(), tmp_path, epochs=2)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    state = ckpt.load(tmp_path / "checkpoints" / "latest.pt")
    _, result = _fit(ToyRegression(), tmp_path, epochs=2, state=state)
    assert result["stop_reason"] == "already complete"
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamp


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(DivergedError, match="diverged at epoch 2"):
        _fit(ToyRegression(nan_after=8), tmp_path)  # 8 steps per epoch: NaN from the second epoch on
    state = ckpt.load(tmp_path / "checkpoints" / "latest.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert json.loads((tmp_path / "history.json").read_text())["stop_reason"] == "diverged"


def test_the_monitor_is_checked_against_the_task_before_training():
    cfg = build_config(explicit={"train": {"monitor": "val/miou"}})
    with pytest.raises(
        ConfigError, match=r"train.monitor: 'val/miou' is not a toy metric; use one of val/loss, val/mse"
    ):
        with_task_defaults(cfg, ToyRegression())
    resolved = with_task_defaults(build_config(explicit={}), ToyRegression())
    assert (resolved.train.monitor, resolved.train.mode) == ("val/mse", "min")


def test_validation_statistics_are_summed_over_every_batch(tmp_path):
    task = ToyRegression()
    st, _ = _fit(task, tmp_path, epochs=2)
    model = task.build_model()
    model.load_state_dict(ckpt.load(tmp_path / "checkpoints" / "latest.pt")["model"])
    with torch.no_grad():
        x = torch.stack([b["x"] for b in task.val_set])
        y = torch.stack([b["y"] for b in task.val_set])
        expected = float(((model(x)[:, 0] - y) ** 2).mean())
    assert st.history[-1]["val/mse"] == pytest.approx(expected, rel=1e-5)  # all 4 batches, not the last


def test_a_nan_validation_loss_stops_the_run(tmp_path):
    with pytest.raises(DivergedError, match="validation diverged at epoch 1"):
        _fit(ToyRegression(nan_in_validation=True), tmp_path)
