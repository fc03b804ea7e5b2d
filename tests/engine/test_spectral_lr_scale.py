"""model.spectral_lr_scale: SSMU-Net's spectral head in its own optimiser groups, whose learning rate is the
schedule's times the factor in every epoch, after a resume too; the default leaves the groups as they were."""

from __future__ import annotations

import math

import pytest
import torch

from ssmseg.config.schema import ModelConfig, OptimConfig, ScheduleConfig
from ssmseg.engine.optim import EpochSchedule, build_optimizer, param_groups
from ssmseg.errors import ConfigError
from ssmseg.models import build_model


def _model():
    return build_model(ModelConfig(name="ssmu_net", spectral_context=3), 6, 3, tiny=True)


def _head_ids(model):
    return {id(p) for p in model.spectral.parameters()}


def _check_scaled(optimizer, model, lr, factor):
    head = _head_ids(model)
    seen = set()
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        in_head = ids <= head
        assert in_head or not ids & head  # a group is all head or no head
        assert group["lr"] == pytest.approx(lr * (factor if in_head else 1.0), rel=1e-12)
        seen |= ids & head
    assert seen == head


def test_the_default_keeps_two_groups_without_a_factor():
    model = _model()
    plain = param_groups(model, 0.01)
    same = param_groups(model, 0.01, {model.spectral: 1.0})
    assert [len(g["params"]) for g in plain] == [len(g["params"]) for g in same] and len(plain) == 2
    assert all("lr_scale" not in g for g in plain + same)
    optimizer = build_optimizer(OptimConfig(lr=3e-3), model, {model.spectral: 1.0})
    assert [g["lr"] for g in optimizer.param_groups] == [3e-3, 3e-3]


def test_the_head_groups_keep_the_factor_in_every_epoch_of_the_schedule():
    model = _model()
    optimizer = build_optimizer(OptimConfig(lr=3e-3, weight_decay=0.05), model, {model.spectral: 0.1})
    assert len(optimizer.param_groups) == 4
    _check_scaled(optimizer, model, 3e-3, 0.1)  # before the first epoch
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(model.spectral.weight)] == 0.05 and decay[id(model.spectral.bias)] == 0.0
    schedule = EpochSchedule(ScheduleConfig(name="cosine", warmup_epochs=2, min_lr=0.0), 3e-3, 8)
    rates = []
    for epoch in range(8):
        lr = schedule.apply(optimizer, epoch)
        assert lr == pytest.approx(schedule.lr(epoch))  # the schedule's own rate, unscaled
        _check_scaled(optimizer, model, lr, 0.1)
        rates.append(lr)
    assert len(set(rates)) == 8


def test_a_restored_optimizer_keeps_the_factor():
    model = _model()
    optimizer = build_optimizer(OptimConfig(lr=3e-3), model, {model.spectral: 0.1})
    model(torch.randn(2, 6, 8, 8)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    again = build_optimizer(OptimConfig(lr=3e-3), model, {model.spectral: 0.1})
    again.load_state_dict(state)
    EpochSchedule(ScheduleConfig(name="cosine", warmup_epochs=0, min_lr=0.0), 3e-3, 4).apply(again, 2)
    _check_scaled(again, model, 0.5 * 3e-3 * (1 + math.cos(math.pi / 2)), 0.1)


def test_it_needs_the_spectral_head_and_a_positive_factor():
    with pytest.raises(ConfigError, match="spectral_lr_scale"):
        build_model(ModelConfig(name="ssmu_net", spectral_head=False, spectral_lr_scale=0.1), 3, 2)
    with pytest.raises(ConfigError, match="spectral_lr_scale is not read by unet"):
        build_model(ModelConfig(name="unet", spectral_lr_scale=0.1), 3, 2)
    build_model(ModelConfig(name="ssmu_net", spectral_head=False), 3, 2)  # the default is fine without it
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            ModelConfig(name="ssmu_net", spectral_lr_scale=bad)


def test_training_gives_the_head_the_scaled_rate(synthetic_dataset, tmp_path):
    from ssmseg.config import build_config
    from ssmseg.engine import checkpoint as ckpt
    from ssmseg.experiments.train import train

    cfg = build_config(
        preset="fast",
        explicit={
            "data": {"dataset": str(synthetic_dataset)},
            "model": {"spectral_lr_scale": 0.1},
            "train": {"epochs": 2},
            "runtime": {"threads": 1},
        },
    )
    train(cfg, run_dir=tmp_path / "run")
    groups = ckpt.load(tmp_path / "run" / "checkpoints" / "latest.pt")["optimizer"]["param_groups"]
    scaled = [g for g in groups if "lr_scale" in g]
    plain = [g for g in groups if "lr_scale" not in g]
    assert len(scaled) == 2 and len(plain) == 2 and all(g["lr_scale"] == 0.1 for g in scaled)
    assert sorted(len(g["params"]) for g in scaled) == [1, 1]  # the head's weight and bias
    assert all(g["lr"] == pytest.approx(0.1 * plain[0]["lr"], rel=1e-12) for g in scaled)
    assert plain[0]["lr"] > 0
