"""A preset that picks one model still works with another: the model keys only the preset set, for its own
model, are dropped (one notice); keys the user set stay, and a model that does not read them refuses them."""

from __future__ import annotations

import pytest
import torch
import yaml

from ssmseg.config import available_presets, build_config, dump_config
from ssmseg.errors import ConfigError
from ssmseg.models.registry import build_model, model_names

PAIRS = [
    (preset, model) for preset in available_presets() for model in model_names(build_config(preset=preset).task.name)
]


@pytest.mark.parametrize(("preset", "model"), PAIRS)
def test_every_preset_builds_every_model_of_its_task(preset, model):
    cfg = build_config(preset=preset, overrides=[f"model.name={model}"])
    assert cfg.model.name == model
    net = build_model(cfg.model, 3, 4)  # construction runs the model-key check
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("model", model_names("segmentation"))
def test_fast_preset_with_another_segmentation_model_runs_forward(model):
    cfg = build_config(preset="fast", overrides=[f"model.name={model}"])
    net = build_model(cfg.model, 5, 3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 5, cfg.data.crop_size, cfg.data.crop_size))
    assert out.shape == (1, 3, cfg.data.crop_size, cfg.data.crop_size)


@pytest.mark.parametrize("preset", ["fields_fast", "fields", "fields_bands"])
@pytest.mark.parametrize("model", model_names("reconstruction"))
def test_fields_presets_with_either_field_model_run_forward(preset, model):
    cfg = build_config(preset=preset, overrides=[f"model.name={model}", "model.width=16", "model.depth=2"])
    net = build_model(cfg.model, 1, 1).eval()
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, 16, 16, generator=g) < 0.2).float()
    x_t, observed = torch.randn(1, 1, 16, 16, generator=g), torch.randn(1, 1, 16, 16, generator=g) * mask
    with torch.no_grad():
        out = net(x_t, torch.rand(1, generator=g), observed, mask)
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


def test_dropped_preset_keys_give_one_notice_and_the_resolved_config_records_what_runs(capsys):
    cfg = build_config(preset="fast", overrides=["model.name=cmt_unet"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.n_filters=8" in err and "cmt_unet" in err
    assert "d_state" not in err  # cmt_unet reads d_state: the preset's 8 stays
    saved = yaml.safe_load(dump_config(cfg))["model"]
    assert saved["name"] == "cmt_unet" and saved["n_filters"] == 16 and saved["d_state"] == 8


def test_no_notice_when_the_model_is_the_presets_own(capsys):
    build_config(preset="fast", overrides=["model.name=ssmu_net"])
    build_config(preset="fast")
    assert capsys.readouterr().err == ""


def test_a_key_the_user_set_that_the_model_does_not_read_stays_an_error(tmp_path):
    cfg = build_config(preset="fast", overrides=["model.name=cmt_unet", "model.n_filters=8"])
    with pytest.raises(ConfigError, match=r"model\.n_filters is not read by cmt_unet"):
        build_model(cfg.model, 3, 4)
    user = tmp_path / "user.yaml"
    user.write_text("model:\n  name: unet\n  d_state: 4\n", encoding="utf-8")
    cfg = build_config(preset="fast", config_file=user)
    with pytest.raises(ConfigError, match=r"model\.d_state is not read by unet"):
        build_model(cfg.model, 3, 4)


def test_a_model_chosen_in_a_config_file_also_drops_the_presets_keys(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("model:\n  name: micro_segformer\n", encoding="utf-8")
    cfg = build_config(preset="fast", config_file=user)
    build_model(cfg.model, 3, 4)
    assert cfg.model.n_filters == 16 and cfg.model.d_state == 16


def test_band_and_class_counts_below_one_are_config_errors_for_segmentation_models_only():
    from ssmseg.config.schema import ModelConfig

    with pytest.raises(ConfigError, match="at least one input band"):
        build_model(ModelConfig(name="unet"), 0, 3, tiny=True)
    with pytest.raises(ConfigError, match="at least one class"):
        build_model(ModelConfig(name="unet"), 3, 0, tiny=True)
    build_model(ModelConfig(name="field_unet"), 1, 0, tiny=True)  # fields: no classes
