"""train.ema through ``ssmseg train``: the run's checkpoints hold the average (what eval scores) and the
optimiser's weights, and an interrupted run resumes exactly."""

from __future__ import annotations

import pytest
import torch

from ssmseg.engine import checkpoint as ckpt
from ssmseg.experiments.train import train
from tests.engine.test_task_engine import interrupt_training_at
from tests.experiments.test_train import strip_timing, tiny


def test_an_interrupted_ema_run_resumes_exactly(synthetic_dataset, tmp_path, monkeypatch):
    ema = {"train": {"epochs": 4, "ema": 0.9}}
    full = train(tiny(synthetic_dataset, tmp_path, "full", **ema))
    restore_loop = interrupt_training_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(synthetic_dataset, tmp_path, "cut", **ema))
    restore_loop()
    resumed = train(tiny(synthetic_dataset, tmp_path, "cut", **ema), resume=tmp_path / "cut")
    assert strip_timing(resumed.history) == strip_timing(full.history)
    a = ckpt.load(tmp_path / "full" / "checkpoints" / "latest.pt")
    b = ckpt.load(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert a["ema"]["decay"] == 0.9 and a["ema"]["updates"] == b["ema"]["updates"] > 0
    for x, y in ((a["model"], b["model"]), (a["ema"]["online"], b["ema"]["online"])):  # the average, the trained
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert any(not torch.equal(a["model"][k], a["ema"]["online"][k]) for k in a["model"])
