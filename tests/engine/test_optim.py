"""Schedules, parameter groups and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from ssmseg.config.schema import OptimConfig, ScheduleConfig
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.optim import EpochSchedule, build_optimizer, param_groups
from ssmseg.errors import InputError
from ssmseg.ssm.mamba import Mamba


def lrs(epochs=10, **kw):
    sched = EpochSchedule(ScheduleConfig(**kw), 1.0, epochs)
    return [sched.lr(e) for e in range(epochs)]


def test_linear_warmup_then_cosine():
    values = lrs(10, name="cosine", warmup_epochs=2, warmup_start_factor=0.1, min_lr=0.0)
    assert values[0] == pytest.approx(0.1) and values[1] == pytest.approx(0.55) and values[2] == pytest.approx(1.0)
    assert values[2:] == sorted(values[2:], reverse=True)
    assert values[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_cosine_restarts_and_poly_and_constant():
    restarts = lrs(8, name="cosine_restarts", t0=2, t_mult=2, min_lr=0.0)
    assert restarts[0] == 1.0 and restarts[2] == 1.0 and restarts[6] == 1.0  # cycles of 2, then 4
    poly = lrs(4, name="poly", power=1.0, min_lr=0.0)
    assert poly == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert lrs(3, name="constant") == [1.0, 1.0, 1.0]


def test_plateau_cuts_after_patience():
    sched = EpochSchedule(ScheduleConfig(name="plateau", plateau_patience=1, plateau_factor=0.5), 1.0, 10)
    for metric in (0.5, 0.5, 0.5):
        sched.step(metric)
    assert sched.lr(5) == 0.5
    state = sched.state_dict()
    other = EpochSchedule(ScheduleConfig(name="plateau"), 1.0, 10)
    other.load_state_dict(state)
    assert other.lr(5) == 0.5


def test_no_weight_decay_on_norms_biases_A_log_and_D():
    model = torch.nn.Sequential(Mamba(16), torch.nn.LayerNorm(16))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"0.A_log", "0.D", "0.dt_proj.bias", "1.weight", "1.bias", "0.conv1d.bias"} <= skipped
    assert "0.in_proj.weight" in {names[id(p)] for p in decay["params"]}
    assert isinstance(build_optimizer(OptimConfig(name="sgd"), model), torch.optim.SGD)


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "rng": ckpt.rng_state(), "epoch": 3, "config": {"a": [1, 2]}}
    ckpt.save(state, tmp_path / "c" / "latest.pt")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["latest.pt"]
    loaded = ckpt.load(tmp_path / "c" / "latest.pt")
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    ckpt.set_rng_state(loaded["rng"])


def test_corrupt_or_foreign_checkpoints_are_one_line_errors(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="corrupt"):
        ckpt.load(tmp_path / "bad.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not an ssmseg checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
