"""Reconstruction end to end on tiny sinusoid fields: train through the engine, evaluate per observed
fraction, and one-line errors when tasks, models and checkpoints are mixed up."""

from __future__ import annotations

import json

import pytest

from ssmseg.config import build_config
from ssmseg.data.builtin import prepare_sinusoids
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError, UsageError
from ssmseg.experiments.evaluate import evaluate
from ssmseg.experiments.train import train


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    cfg = build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"fields": {"count": 40, "size": 16}}})
    return prepare_sinusoids(cfg, tmp_path_factory.mktemp("fields") / "ds").out


def recon(dataset, out, name, **over):
    settings = {
        "task": {"name": "reconstruction"},
        "data": {"dataset": str(dataset), "batch_size": 8},
        "model": {"name": "field_flow", "width": 16, "depth": 2, "d_state": 4, "n_fourier": 16, "heads": 2},
        "train": {"epochs": 2},
        "schedule": {"warmup_epochs": 0},
        "reconstruction": {"observed": [0.05, 0.2], "val_steps": 2, "eval_fractions": [0.1, 0.2], "samples": 2},
        "runtime": {"out_dir": str(out), "name": name, "device": "cpu"},
    }
    for section, values in over.items():
        settings.setdefault(section, {}).update(values)
    return build_config(explicit=settings)


@pytest.fixture(scope="module")
def run(fields, tmp_path_factory):
    return train(recon(fields, tmp_path_factory.mktemp("runs"), "flow"))


def test_training_records_the_reconstruction_task(run):
    history = json.loads((run.run_dir / "history.json").read_text())
    assert (history["task"], history["monitor"], history["mode"]) == ("reconstruction", "val/psnr", "max")
    rec = history["epochs"][-1]
    assert {"train/loss", "val/loss", "val/psnr", "val/rmse", "val/ssim", "val/psnr_solve"} <= set(rec)
    assert 0 < rec["val/psnr"] < 100 and rec["val/rmse"] > 0
    state = ckpt.load(run.run_dir)
    assert state["task"] == "reconstruction" and state["stats"]["max"][0] > state["stats"]["min"][0]
    assert state["config"]["data"]["crop_size"] == 16  # the fields' side ran, not the default 64


def test_eval_reports_each_fraction_with_counted_nfe(run, fields, tmp_path):
    cfg = recon(fields, tmp_path, "unused")
    result = evaluate(cfg, run.run_dir, tmp_path / "ev", [], [], None)
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert result.metrics["task"] == "reconstruction"
    assert [r["fraction"] for r in m["per_fraction"]] == [0.1, 0.2]
    assert m["protocol"]["nfe_per_sample"] == 2 and m["protocol"]["samples"] == 2  # euler: 1 NFE per step
    row = m["per_fraction"][0]
    assert 0 <= row["coverage90"] <= 1 and row["spread"] > 0
    assert row["psnr_mean"] != row["psnr_sample"]
    assert (tmp_path / "ev" / "metrics.csv").is_file() and (tmp_path / "ev" / "vis" / "examples.png").is_file()


def test_tasks_models_and_checkpoints_do_not_mix(run, fields, synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="field_flow or field_unet"):
        train(
            recon(
                fields,
                tmp_path,
                "x",
                model={"name": "unet", "width": 8, "depth": 2, "d_state": 16, "n_fourier": 64, "heads": 4},
            )
        )
    with pytest.raises(InputError, match="segmentation dataset"):
        train(recon(synthetic_dataset, tmp_path, "y"))
    with pytest.raises(UsageError, match="test fields"):
        evaluate(recon(fields, tmp_path, "z"), run.run_dir, tmp_path / "ev", [tmp_path / "a.tif"], [], None)
    from ssmseg.tasks.reconstruction.sampling import load_field_model

    with pytest.raises(InputError, match="segmentation model"):
        load_field_model({"task": "segmentation"}, "cpu")


def test_a_key_the_model_does_not_read_is_refused(fields, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.n_filters is not read by field_flow"):
        train(recon(fields, tmp_path, "k", model={"n_filters": 3}))


def test_a_model_trained_on_16x16_fields_reconstructs_24x24_fields(run):
    import torch

    from ssmseg.data.fields import normalize, observed_masks, sinusoid_fields
    from ssmseg.tasks.reconstruction.metrics import psnr
    from ssmseg.tasks.reconstruction.sampling import draw_samples, load_field_model, sample_noise

    state = ckpt.load(run.run_dir)
    assert state["field_size"] == [16, 16]
    model, stats = load_field_model(state, torch.device("cpu"))
    truth = torch.from_numpy(sinusoid_fields(4, 24, seed=9))
    observed = torch.from_numpy(observed_masks(4, 24, 24, 0.2, seed=1))[:, None]
    values = normalize(truth, stats).float()
    with torch.no_grad():
        samples, nfe = draw_samples(
            model, values, observed, sample_noise(torch.arange(4), 2, (1, 24, 24), 0), "euler", 2
        )
    assert samples.shape == (2, 4, 1, 24, 24) and nfe == 2 and torch.isfinite(samples).all()
    assert torch.equal(samples[0][observed], values[observed])  # what was measured is kept
    assert psnr(samples[0], values, (values.max() - values.min()).item(), observed).isfinite().all()


def test_tv_weight_and_seed_act(fields, tmp_path):
    import torch

    from ssmseg.tasks.reconstruction.task import ReconstructionTask

    plain = ReconstructionTask(recon(fields, tmp_path, "a"), fields)
    tv = ReconstructionTask(recon(fields, tmp_path, "b", loss={"tv_weight": 0.5}), fields)
    other = ReconstructionTask(recon(fields, tmp_path, "c", reconstruction={"seed": 7}), fields)
    torch.manual_seed(0)
    model = plain.build_model()
    batch = {"field": torch.stack([plain.train_set[i]["field"] for i in range(4)])}
    losses = [t.training_step(model, batch, torch.Generator().manual_seed(1)).loss.item() for t in (plain, tv)]
    assert losses[1] > losses[0]  # the penalty is added
    assert not torch.equal(plain.val_set[0]["observed"], other.val_set[0]["observed"])  # fixed draws follow the seed
