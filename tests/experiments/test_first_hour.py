"""What a user meets in the first hour around train, eval and cv (issue 19): a diverged run keeps its folder
and says what is kept, a finished run with damaged checkpoints says so, a run folder whose checkpoint holds
another model is a one-line error, eval refuses model changes and warns about mask values that are no class,
a held-out scene is not called a training scene, and cv.baselines on a task without them is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from ssmseg.config import build_config
from ssmseg.data.builtin import prepare_sinusoids
from ssmseg.data.prepare import prepare
from ssmseg.engine.loop import DivergedError
from ssmseg.errors import ConfigError
from ssmseg.experiments.cv import run_cv
from ssmseg.experiments.evaluate import evaluate
from ssmseg.experiments.train import train
from tests.cli.conftest import TINY, assert_one_line_error, invoke
from tests.cli.conftest import world as world  # the session's trained run (a fixture)
from tests.data.helpers import prep_config, scene, write_tif
from tests.experiments.test_train import tiny


def test_a_diverged_run_keeps_its_folder_and_says_what_is_kept(synthetic_dataset, tmp_path):
    with pytest.raises(DivergedError) as caught:
        train(tiny(synthetic_dataset, tmp_path, "boom", optim={"lr": 1e6}, schedule={"warmup_epochs": 0}))
    message, run = str(caught.value), tmp_path / "boom"
    assert run.is_dir() and (run / "config.yaml").is_file()
    assert "last good checkpoint is kept" not in message and "lower optim.lr" in message
    if (run / "checkpoints" / "latest.pt").is_file():
        assert "keeps its history and the checkpoints of epoch" in message and (run / "history.json").is_file()
    else:
        assert "no checkpoint" in message


@pytest.mark.parametrize("damage", ["empty latest", "truncated best"])
def test_resuming_a_finished_run_with_damaged_checkpoints_says_so(world, tmp_path, damage):
    run = world.copy_run(tmp_path / "r")
    name = "latest.pt" if damage == "empty latest" else "best.pt"
    path = run / "checkpoints" / name
    path.write_bytes(b"" if damage == "empty latest" else path.read_bytes()[: path.stat().st_size // 2])
    result = invoke("train", "--resume", run)
    assert_one_line_error(result, 1, name, "empty" if damage == "empty latest" else "truncated", "train it again")
    assert "nothing to do" not in result.output


def test_resuming_a_folder_whose_checkpoint_holds_another_model_is_one_line(world, tmp_path):
    run = world.copy_run(tmp_path / "r")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"] = {"name": "ssmu_net"}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert_one_line_error(
        invoke("train", "--resume", run, "--set", "train.epochs=2"), 1, "holds a unet model", "ssmu_net"
    )


def test_eval_refuses_model_settings_it_cannot_apply(world):
    assert_one_line_error(invoke("eval", world.run, "--set", "model.name=cmt_unet"), 2, "model.name", "unet")
    assert_one_line_error(invoke("eval", world.run, "--set", "model.width=16"), 2, "model.width")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Two scenes, b held out as a whole (prep.split.test), and a one-epoch run on the dataset."""
    root = tmp_path_factory.mktemp("heldout")
    scene(root / "src", "a", size=48)
    image_b, mask_b = scene(root / "src", "b", size=48, seed=1)
    dataset = prepare(
        prep_config(root / "src", split={"block_size": 16, "folds": 2, "test": [str(image_b)]}), root / "ds"
    ).out
    result = invoke(
        "train", *TINY, "--set", f"data.dataset={dataset}", "--out", root / "runs", "--set", "runtime.name=r"
    )
    assert result.exit_code == 0, result.output
    return root, root / "runs" / "r", image_b, mask_b


def eval_cfg():
    return build_config(explicit={"data": {"crop_size": 16}, "eval": {"window": 16}, "runtime": {"device": "cpu"}})


def test_a_held_out_scene_is_not_called_a_training_scene(held_out, tmp_path):
    root, run, image_b, mask_b = held_out
    held = evaluate(eval_cfg(), run, tmp_path / "b", [image_b], [mask_b], None)
    assert not any("trained on" in w for w in held.warnings), held.warnings
    seen = evaluate(eval_cfg(), run, tmp_path / "a", [root / "src" / "img" / "a.tif"], [], None)
    assert any("a scene this run was trained on" in w and "of its" in w for w in seen.warnings), seen.warnings


def test_mask_values_that_are_no_class_are_counted_and_named(held_out, tmp_path):
    _, run, image_b, mask_b = held_out
    import rasterio

    with rasterio.open(mask_b) as src:
        labels = src.read(1)
    labels[:, :24] = 7  # half the mask holds a value no class has
    bad = write_tif(tmp_path / "bad.tif", labels)
    result = evaluate(eval_cfg(), run, tmp_path / "ev", [image_b], [bad], None)
    notes = [w for w in result.warnings if "none of the model's classes" in w]
    assert len(notes) == 1 and f"7: {48 * 24} px" in notes[0], result.warnings
    assert sum(map(sum, result.metrics["confusion_matrix"])) == int((labels != 7).sum())


def test_cv_baselines_on_a_task_without_them_is_refused_before_training(tmp_path):
    cfg = build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"fields": {"count": 40, "size": 16}}})
    dataset = prepare_sinusoids(cfg, tmp_path / "ds").out
    cfg = build_config(
        explicit={
            "task": {"name": "reconstruction"},
            "data": {"dataset": str(dataset)},
            "model": {"name": "field_unet", "width": 8, "depth": 2},
            "train": {"epochs": 1},
            "schedule": {"warmup_epochs": 0},
            "reconstruction": {"val_steps": 1},
            "cv": {"baselines": True},
            "runtime": {"out_dir": str(tmp_path / "runs"), "name": "cv"},
        }
    )
    with pytest.raises(ConfigError, match=r"cv\.baselines.*sweep-steps"):
        run_cv(cfg, 2)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    shutil.rmtree(tmp_path / "ds")


def test_the_majority_chance_line_says_whose_majority_and_gives_the_scored_pixels_own():
    from ssmseg.tasks.segmentation.evaluate import chance_baselines

    cm = np.array([[10, 0, 0], [0, 60, 0], [0, 0, 30]])  # the scored pixels: c1 is the majority
    chance = chance_baselines(cm, [500, 100, 100], ["c0", "c1", "c2"])  # training: c0 is
    assert chance["majority_class"]["class"] == "c0" and chance["majority_class"]["from"] == "training"
    assert chance["majority_class"]["oa"] == pytest.approx(0.1)
    assert chance["scored_majority"]["class"] == "c1" and chance["scored_majority"]["oa"] == pytest.approx(0.6)
