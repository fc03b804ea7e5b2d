"""train.ema: the bias-corrected moving average of the weights is what validation scores and what every
checkpoint's model holds; training goes on with the optimiser's weights, and resume continues both exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ssmseg.config import build_config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.ema import WeightEMA
from ssmseg.errors import ConfigError
from tests.engine.test_task_engine import ToyRegression, interrupt_training_at
from tests.engine.test_task_engine import _fit as fit_toy


class Counter(nn.Module):
    """One float parameter and one integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def test_the_average_is_bias_corrected_and_integer_buffers_are_copied():
    model, decay = Counter(), 0.9
    ema = WeightEMA(model, decay)
    seen = [torch.tensor([1.0, -1.0]), torch.tensor([3.0, 0.0]), torch.tensor([-2.0, 5.0])]
    for n, value in enumerate(seen, 1):
        model.w.data.copy_(value)
        model.steps.fill_(n)
        ema.update(model)
    ages = torch.tensor([decay**2, decay, 1.0])  # the newest weights weigh most; the zeros they started at never
    expected = (ages[:, None] * torch.stack(seen)).sum(0) / ages.sum()
    assert torch.allclose(ema.shadow["w"], expected, atol=1e-6)
    assert ema.shadow["steps"].item() == 3 and ema.updates == 3


def test_applied_swaps_the_average_in_and_the_trained_weights_back():
    model = Counter()
    ema = WeightEMA(model, 0.5)
    model.w.data.fill_(4.0)
    ema.update(model)
    model.w.data.fill_(8.0)
    ema.update(model)  # average (4 * 0.5 + 8) / 1.5
    with pytest.raises(RuntimeError, match="inside"), ema.applied(model):
        assert torch.allclose(model.w, torch.full((2,), 10.0 / 1.5))
        raise RuntimeError("inside")
    assert torch.equal(model.w.data, torch.full((2,), 8.0))


def test_the_decay_is_checked():
    with pytest.raises(ConfigError) as err:
        build_config(explicit={"train": {"ema": 1.0}})
    assert err.value.problems[0].startswith("train.ema: Input should be less than 1")
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(Counter(), 0.0)


def _fit(run_dir, ema=0.8, epochs=6, state=None):
    st, _ = fit_toy(ToyRegression(), run_dir, epochs=epochs, state=state, ema=ema)
    return st, st.task


def _val_mse(task, weights):
    model = task.build_model()
    model.load_state_dict(weights)
    x = torch.stack([b["x"] for b in task.val_set])
    y = torch.stack([b["y"] for b in task.val_set])
    with torch.no_grad():
        return float(((model(x)[:, 0] - y) ** 2).mean())


def test_validation_and_checkpoints_use_the_average_and_training_the_optimisers_weights(tmp_path):
    st, task = _fit(tmp_path)
    latest = ckpt.load(tmp_path / "checkpoints" / "latest.pt")
    online = {k: v for k, v in st.model.state_dict().items()}
    assert all(torch.equal(latest["ema"]["online"][k], online[k]) for k in online)  # what training ended with
    assert all(torch.equal(latest["model"][k], st.ema.shadow[k]) for k in online)  # what validation scored
    assert not torch.allclose(latest["model"]["weight"], online["weight"])
    assert latest["ema"]["updates"] == 6 * 8 and latest["ema"]["decay"] == 0.8
    assert st.history[-1]["val/mse"] == pytest.approx(_val_mse(task, latest["model"]), rel=1e-5)
    assert st.history[-1]["val/mse"] != pytest.approx(_val_mse(task, online), rel=1e-3)
    assert json.loads((tmp_path / "history.json").read_text())["ema"] == 0.8


def test_without_ema_checkpoints_hold_the_trained_weights_only(tmp_path):
    st, _ = _fit(tmp_path, ema=None)
    latest = ckpt.load(tmp_path / "checkpoints" / "latest.pt")
    assert "ema" not in latest and all(torch.equal(latest["model"][k], v) for k, v in st.model.state_dict().items())


def test_a_run_with_ema_resumes_exactly(tmp_path, monkeypatch):
    full, _ = _fit(tmp_path / "full")
    restore_loop = interrupt_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut")
    restore_loop()
    resumed, _ = _fit(tmp_path / "cut", state=ckpt.load(tmp_path / "cut" / "checkpoints" / "latest.pt"))
    machine = ("seconds", "val_seconds", "samples_per_s", "peak_memory_mb")
    assert [{k: v for k, v in r.items() if k not in machine} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in machine} for r in full.history
    ]
    a = ckpt.load(tmp_path / "full" / "checkpoints" / "latest.pt")
    b = ckpt.load(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"]["online"][k], b["ema"]["online"][k]) for k in a["model"])
    assert a["ema"]["updates"] == b["ema"]["updates"]
