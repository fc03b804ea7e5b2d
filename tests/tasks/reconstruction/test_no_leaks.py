"""Reconstruction scores what it says and sees only what it may: every classical baseline reads the observed
pixels alone (the truth elsewhere changes nothing), sweep-steps hands them exactly the fields' observed
pixels, and eval scores the test split that metrics.json names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from ssmseg.config import build_config, dump_config
from ssmseg.data.builtin import prepare_sinusoids
from ssmseg.data.fields import observed_masks, sinusoid_fields
from ssmseg.data.manifest import load
from ssmseg.tasks.reconstruction import baselines, evaluate
from ssmseg.tasks.reconstruction import sweep_grid as sw
from ssmseg.tasks.reconstruction.baselines import BASELINES, predict
from ssmseg.tasks.reconstruction.sweep_fields import SweepFields


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_never_reads_the_unobserved_truth(name):
    field = sinusoid_fields(2, 20, max_cycles=2.0, seed=3)[:, 0]  # (2, 20, 20): two channels
    mask = observed_masks(1, 20, 20, 0.15, seed=1)[0]
    honest = predict(name, field, mask)
    poisoned = np.where(mask, field, np.random.default_rng(0).normal(0, 1e3, field.shape))
    assert np.array_equal(predict(name, poisoned, mask), honest)
    assert np.array_equal(predict(name, np.where(mask, field, np.nan), mask), honest)


def test_sweep_baselines_see_only_the_fields_observed_pixels(monkeypatch):
    truth = torch.from_numpy(sinusoid_fields(3, 16, max_cycles=2.0, seed=5)).float()  # (3, 1, 16, 16)
    observed = torch.from_numpy(observed_masks(3, 16, 16, 0.2, seed=4))[:, None]
    fields = SweepFields(truth, truth, observed, torch.arange(3), None, 3, 0.2)
    cfg = build_config(explicit={"sweep": {"baselines": ["mean", "linear", "gp"], "examples": 1}})
    honest, _ = sw.run_baselines(cfg, fields, 2.0)
    seen = []
    real = baselines.predict

    def hidden(name, values, mask):  # the unobserved truth replaced by NaN: a reader of it gives NaN
        seen.append(mask.copy())
        return real(name, np.where(mask, values, np.nan), mask)

    monkeypatch.setattr(sw.bl, "predict", hidden)
    blind, _ = sw.run_baselines(cfg, fields, 2.0)
    assert all(np.array_equal(m, observed[i % 3, 0].numpy()) for i, m in enumerate(seen))
    for a, b in zip(honest, blind, strict=True):
        assert all(np.isfinite(b[k]) and b[k] == a[k] for k in ("psnr", "rmse", "ssim", "psnr_all"))


def test_eval_scores_the_test_split_that_metrics_json_names(tmp_path, monkeypatch):
    cfg = build_config(
        explicit={
            "task": {"name": "reconstruction"},
            "prep": {"fields": {"count": 40, "size": 16}},
            "model": {"name": "field_unet", "width": 8, "depth": 2},
            "reconstruction": {"val_steps": 1, "eval_fractions": [0.1], "samples": 1},
            "eval": {"batch_size": 64},
        }
    )
    dataset = prepare_sinusoids(cfg, tmp_path / "ds").out
    from ssmseg.tasks.reconstruction.task import ReconstructionTask

    task = ReconstructionTask(cfg, dataset)
    state = {
        **task.checkpoint_meta(),
        "task": "reconstruction",
        "config": yaml.safe_load(dump_config(cfg)),
        "model": task.build_model().state_dict(),
        "dataset": str(dataset),
    }
    parts = []
    real = evaluate.FieldDataset

    class Spy(real):
        def __init__(self, folder, part="train", *args, **kwargs):
            parts.append(part)
            super().__init__(folder, part, *args, **kwargs)

    monkeypatch.setattr(evaluate, "FieldDataset", Spy)
    (tmp_path / "ev" / "vis").mkdir(parents=True)
    evaluate.run(cfg, state, torch.device("cpu"), tmp_path / "ev", [], [], None)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["protocol"]["split"] == "test" and parts == ["test"]
    test_fields = [f for f in load(dataset)["fields"] if f["split"] == "test"]
    assert metrics["per_fraction"][0]["fields"] == len(test_fields)
