"""Runs a user can follow: resume from the run's own config, finished runs left alone, one line on Ctrl-C,
one plain line per epoch, only rank 0 printing, and config.yaml recording what actually ran."""

from __future__ import annotations

import json

import yaml

from ssmseg.engine import loop
from tests.cli.conftest import TINY, assert_one_line_error, invoke, snapshot


def test_resume_extends_train_epochs_without_force(world, tmp_path):
    run = world.copy_run(tmp_path / "r")
    result = invoke("train", "--resume", run, "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2] and history["stop_reason"] == "completed"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_resume_lists_only_the_keys_the_user_changed(world, tmp_path):
    run = world.copy_run(tmp_path / "r")
    result = invoke("train", "--resume", run, "--set", "train.epochs=2", "--set", "optim.lr=0.5")
    assert_one_line_error(result, 2, "would change optim.lr from", "--force")
    for untouched in ("data.", "model.", "schedule.", "train.epochs"):
        assert untouched not in result.output, result.output


def test_resuming_a_finished_run_says_so_and_writes_nothing(world):
    before = snapshot(world.run)
    result = invoke("train", "--resume", world.run)
    assert result.exit_code == 0 and "already finished all 1 epochs; nothing to do" in result.output
    assert "--set train.epochs=2" in result.output
    assert snapshot(world.run) == before  # no new TensorBoard file, config or history


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(world, tmp_path, monkeypatch):
    original = loop.run_epoch

    def interrupt_in_epoch_2(st, loader, cfg, rt, epoch, train):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(st, loader, cfg, rt, epoch, train)

    monkeypatch.setattr(loop, "run_epoch", interrupt_in_epoch_2)
    args = ["train", *TINY, "--set", f"data.dataset={world.dataset}", "--set", "train.epochs=2", "--out", tmp_path]
    result = invoke(*args, "--set", "runtime.name=cut")
    assert result.exit_code == 130
    last = result.output.strip().splitlines()[-1]
    assert (
        last == f"interrupted: run '{tmp_path / 'cut'}' stopped after epoch 1 of 2; resume it exactly with: "
        f"ssmseg train --resume {tmp_path / 'cut'}"
    )
    monkeypatch.setattr(loop, "run_epoch", original)
    assert invoke("train", "--resume", tmp_path / "cut").exit_code == 0
    assert len(json.loads((tmp_path / "cut" / "history.json").read_text())["epochs"]) == 2


def test_ctrl_c_before_the_first_epoch_keeps_nothing(world, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_epoch", interrupt)
    result = invoke("train", *TINY, "--set", f"data.dataset={world.dataset}", "--out", tmp_path)
    assert result.exit_code == 130 and "nothing was kept" in result.output
    assert list(tmp_path.iterdir()) == []


def test_one_plain_line_per_epoch_when_output_is_not_a_terminal(world, tmp_path):
    result = invoke(
        "train", *TINY, "--set", f"data.dataset={world.dataset}", "--set", "train.epochs=2", "--out", tmp_path
    )
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("train/loss" in line and "val/miou" in line for line in lines)


def test_only_rank_zero_prints(world):
    assert invoke("config", "show", env={"RANK": "1"}).output == ""
    quiet_error = invoke("config", "show", "--preset", "nope", env={"RANK": "1"})
    assert quiet_error.exit_code == 2 and quiet_error.output == ""
    assert invoke("config", "show", env={"RANK": "0"}).output.startswith("task:")


def test_config_yaml_records_what_the_dataset_fixed(world):
    saved = yaml.safe_load((world.run / "config.yaml").read_text())
    manifest = json.loads((world.dataset / "manifest.json").read_text())
    assert saved["data"]["crop_size"] == manifest["crop_size"] == 16  # not the default 64 that never acted
    assert saved["prep"]["images"] == manifest["prep"]["images"]  # the prep settings that made the patches


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_run(world, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):  # what torch raises when the disk fills up mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr("ssmseg.engine.checkpoint.torch.save", disk_full)
    result = invoke("train", *TINY, "--set", f"data.dataset={world.dataset}", "--out", tmp_path)
    assert_one_line_error(result, 1, "cannot write checkpoint", "best.pt", "free space")
    assert list(tmp_path.iterdir()) == []  # no checkpoint was ever kept: the fresh run folder is removed
