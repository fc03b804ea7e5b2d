"""Fine-tuning: matching weights loaded and the rest listed with the reason, parts frozen (and really fixed
through training), new heads and first layers, and the record in config.yaml and history.json."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ssmseg.config import build_config
from ssmseg.config.schema import ModelConfig
from ssmseg.data.prepare import prepare
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments.finetune import freeze, load_init, part_parameters
from ssmseg.experiments.train import train
from ssmseg.models import build_model
from tests.cli.conftest import TINY, assert_one_line_error, invoke
from tests.data.helpers import prep_config, scene

CMT = {"name": "cmt_unet", "width": 8, "depth": 2, "d_state": 4, "window": 4}


def _source(tmp_path, bands=3, classes=("c0", "c1", "c2")):
    """A saved cmt_unet checkpoint for ``bands`` bands and ``classes``; returns its path and weights."""
    model = build_model(ModelConfig(**CMT), bands, len(classes))
    state = {
        "task": "segmentation",
        "model_name": "cmt_unet",
        "in_channels": bands,
        "classes": list(classes),
        "model": model.state_dict(),
        "epoch": 4,
    }
    ckpt.save(state, tmp_path / "src.pt")
    return tmp_path / "src.pt", model.state_dict()


def _cfg(init, freeze_=(), **model):
    return build_config(explicit={"model": {**CMT, **model}, "finetune": {"init": str(init), "freeze": list(freeze_)}})


def test_new_classes_and_bands_give_a_new_head_and_first_layer(tmp_path):
    path, source = _source(tmp_path)
    cfg = _cfg(path)
    model = build_model(cfg.model, 4, 2)
    report = load_init(model, cfg, {"in_channels": 4, "classes": ["x", "y"]})
    assert set(report.skipped) == {"stem.0.weight", "head.1.weight", "head.1.bias"}
    assert "first layer reinitialised: 3 bands -> 4" in report.skipped["stem.0.weight"]
    assert report.skipped["head.1.weight"].startswith("new classifier head: 3 classes")
    assert report.warnings and "stem.0" in report.warnings[0]
    mine = model.state_dict()
    assert len(report.loaded) == len(mine) - 3
    assert all(torch.equal(mine[k], source[k]) for k in report.loaded)


def test_the_same_bands_in_another_order_reinitialise_the_first_layer(tmp_path):
    model = build_model(ModelConfig(**CMT), 3, 3)
    state = {
        "task": "segmentation",
        "model_name": "cmt_unet",
        "in_channels": 3,
        "classes": ["c0", "c1", "c2"],
        "band_names": ["red", "green", "blue"],
        "model": model.state_dict(),
        "epoch": 4,
    }
    ckpt.save(state, tmp_path / "src.pt")
    cfg = _cfg(tmp_path / "src.pt")
    meta = {"in_channels": 3, "classes": ["c0", "c1", "c2"]}
    same = load_init(build_model(cfg.model, 3, 3), cfg, {**meta, "band_names": ["red", "green", "blue"]})
    assert not same.skipped and not same.warnings
    other = load_init(build_model(cfg.model, 3, 3), cfg, {**meta, "band_names": ["blue", "green", "red"]})
    assert set(other.skipped) == {"stem.0.weight"} and "band order differs" in other.skipped["stem.0.weight"]
    assert other.warnings and "another order" in other.warnings[0]


def test_same_count_other_classes_still_gets_a_new_head(tmp_path):
    path, _ = _source(tmp_path)
    cfg = _cfg(path)
    model = build_model(cfg.model, 3, 3)
    report = load_init(model, cfg, {"in_channels": 3, "classes": ["a", "b", "c"]})
    assert set(report.skipped) == {"head.1.weight", "head.1.bias"} and not report.warnings


def test_other_sizes_are_skipped_with_their_shapes_and_nothing_matching_is_an_error(tmp_path):
    path, _ = _source(tmp_path)
    cfg = _cfg(path, d_state=8)
    report = load_init(build_model(cfg.model, 3, 3), cfg, {"in_channels": 3, "classes": ["c0", "c1", "c2"]})
    assert any("shape" in why and "A_logs" in key for key, why in report.skipped.items())
    cfg = build_config(
        explicit={"model": {"name": "micro_segformer", "width": 8, "depth": 2}, "finetune": {"init": str(path)}}
    )
    with pytest.raises(InputError, match="no weight that fits micro_segformer"):
        load_init(build_model(cfg.model, 5, 2), cfg, {"in_channels": 5, "classes": ["x", "y"]})


def test_parts_and_freezing(tmp_path):
    path, _ = _source(tmp_path)
    model = build_model(ModelConfig(**CMT), 3, 3)
    parts = part_parameters(model, "cmt_unet")
    assert set(parts) == {"encoder", "ssm", "spectral", "decoder", "head"}
    assert all(".ssm." in n or ".norm" in n or ".mlp." in n for n in parts["ssm"])
    assert not parts["encoder"] & parts["ssm"] and parts["spectral"] <= parts["encoder"]
    out = freeze(model, _cfg(path, ["encoder", "ssm"]))
    fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert fixed == parts["encoder"] | parts["ssm"]
    assert out["frozen_parameters"] == sum(p.numel() for n, p in model.named_parameters() if n in fixed)
    with pytest.raises(ConfigError, match="unet has no 'ssm' part; its parts: decoder, encoder, head, spectral"):
        freeze(build_model(ModelConfig(name="unet", width=4, depth=1), 3, 3), _cfg(path, ["ssm"], name="unet"))
    fresh = {"head.weight": "new classifier head", "head.bias": "new classifier head"}
    with pytest.raises(ConfigError, match="unet's head is freshly initialised"):
        freeze(build_model(ModelConfig(name="unet", width=4, depth=1), 3, 3), _cfg(path, ["head"], name="unet"), fresh)
    model = build_model(ModelConfig(**CMT), 3, 3)
    out = freeze(model, _cfg(path, ["encoder"]), {"stem.0.weight": "first layer reinitialised"})
    assert out["trained_although_in_a_frozen_part"] == ["stem.0.weight"] and model.stem[0].weight.requires_grad
    with pytest.raises(ConfigError, match="leaves nothing to train"):
        freeze(model, _cfg(path, ["encoder", "ssm", "decoder", "head"]))


@pytest.mark.parametrize("name", ["ssmu_net", "unet_spectral"])
def test_init_never_carries_the_source_runs_progress_and_freeze_keeps_a_fixed_head_fixed(tmp_path, name):
    spec = {"name": name, "width": 8, "depth": 2, "linear_epochs": 2, "spectral_train": False}
    src = build_model(ModelConfig(**spec), 3, 3)
    src.seen.fill_(500)  # a finished run: its linear phase long over
    src.linear_until.fill_(40)
    state = {"task": "segmentation", "model_name": name, "in_channels": 3, "classes": ["c0", "c1", "c2"]}
    ckpt.save({**state, "model": src.state_dict(), "epoch": 9}, tmp_path / "src.pt")
    cfg = build_config(explicit={"model": spec, "finetune": {"init": str(tmp_path / "src.pt"), "freeze": ["head"]}})
    model = build_model(cfg.model, 3, 3)
    model.set_linear_phase(8)  # what the task sets for this run, before --init loads
    model.spectral.requires_grad_(False)  # model.spectral_train: false, as the task sets it
    report = load_init(model, cfg, state)
    assert int(model.seen) == 0 and int(model.linear_until) == 8 and model.linear_only()
    assert report.skipped["seen"].startswith("training progress of the source run")
    cfg_free = build_config(
        explicit={"model": spec, "finetune": {"init": str(tmp_path / "src.pt"), "freeze": ["encoder"]}}
    )
    freeze(model, cfg_free)
    assert not model.spectral.weight.requires_grad  # not turned back on by freezing another part


def test_freeze_needs_an_init():
    with pytest.raises(ConfigError) as err:
        build_config(explicit={"finetune": {"freeze": ["encoder"]}})
    assert "finetune.freeze" in err.value.problems[0] and "--init" in err.value.problems[0]


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """The same scene as a 3-class dataset and as a 4-band 2-class one."""
    root = tmp_path_factory.mktemp("ft")
    scene(root / "a", size=48)
    scene(root / "b", size=48, bands=4, seed=1)
    three = prepare(prep_config(root / "a"), root / "ds3").out
    two = prepare(prep_config(root / "b", classes=["bg", "fg"], class_map={0: 0, 1: 1, 2: 1}), root / "ds2").out
    source = train(_tiny(three, root, "source")).run_dir
    return source, three, two


def _tiny(dataset, out, name, **over):
    settings = {
        "data": {"dataset": str(dataset), "crop_size": 16, "batch_size": 4, "max_patches": 8},
        "model": {"name": "unet", "width": 4, "depth": 1},
        "train": {"epochs": 1},
        "schedule": {"warmup_epochs": 0},
        "runtime": {"out_dir": str(out), "name": name, "device": "cpu"},
    }
    for section, values in over.items():
        settings.setdefault(section, {}).update(values)
    return build_config(explicit=settings)


def test_a_fine_tuned_run_keeps_frozen_weights_and_records_what_it_did(two_datasets, tmp_path):
    source, _, two = two_datasets
    cfg = _tiny(two, tmp_path, "tuned", finetune={"init": str(source), "freeze": ["encoder"]}, optim={"lr": 0.05})
    run = train(cfg).run_dir
    before = ckpt.load(source)["model"]
    after = ckpt.load(run)
    parts = part_parameters(build_model(cfg.model, 4, 2), "unet")
    frozen = parts["encoder"] - {"stem.0.weight"}  # the first layer reads 4 bands now: new, so it trains
    assert frozen and all(torch.equal(after["model"][k], before[k]) for k in frozen)
    assert not torch.equal(after["model"]["up.0.block.0.weight"], before["up.0.block.0.weight"])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["finetune"] == {"init": str(source), "freeze": ["encoder"]}
    record = json.loads((run / "history.json").read_text())["run"]["finetune"]
    assert record == after["finetune"]
    assert record["checkpoint"].endswith("best.pt") and record["frozen"] == ["encoder"]
    assert record["trained_although_in_a_frozen_part"] == ["stem.0.weight"]
    assert record["skipped"]["head.weight"].startswith("new classifier head")
    assert record["skipped"]["stem.0.weight"].startswith("first layer reinitialised: 3 bands -> 4")


def test_cli_init_lists_what_was_loaded_resumes_frozen_and_refuses_init_with_resume(two_datasets, tmp_path):
    source, three, _ = two_datasets
    result = invoke(
        "train",
        *TINY,
        "--set",
        f"data.dataset={three}",
        "--init",
        source,
        "--out",
        tmp_path,
        "--set",
        "runtime.name=tuned",
        "--set",
        "finetune.freeze=[encoder]",
        "--set",
        "optim.lr=1e-4",
    )
    assert result.exit_code == 0, result.output
    assert "fine-tuning from" in result.output and "loaded 20 of 20 tensors: stem (6), down (6)" in result.output
    assert "frozen: encoder" in result.output
    result = invoke("train", "--resume", tmp_path / "tuned", "--set", "train.epochs=2")  # frozen again, not reloaded
    assert result.exit_code == 0 and "fine-tuning from" not in result.output, result.output
    before, after = ckpt.load(source)["model"], ckpt.load(tmp_path / "tuned" / "checkpoints" / "latest.pt")
    assert after["epoch"] == 1 and torch.equal(after["model"]["down.0.0.weight"], before["down.0.0.weight"])
    assert after["finetune"]["loaded"] and after["finetune"]["frozen"] == ["encoder"]
    result = invoke("train", "--resume", tmp_path / "tuned", "--init", source)
    assert_one_line_error(result, 2, "--init", "--resume")
    result = invoke("train", *TINY, "--set", f"data.dataset={three}", "--init", tmp_path / "missing")
    assert_one_line_error(result, 1, "missing")


def test_resuming_a_run_older_than_the_finetune_keys_is_not_a_change():
    from ssmseg.config import dump_config
    from ssmseg.experiments.resume import resume_differences

    cfg = build_config()
    saved = yaml.safe_load(dump_config(cfg))
    del saved["finetune"], saved["model"]["msa"]  # a config.yaml written before these keys existed
    assert resume_differences(saved, cfg) == []
    assert resume_differences(saved, build_config(explicit={"model": {"msa": False}})) == ["model.msa"]
