"""Each way a command used to destroy a user's files, made impossible (issue 9): a command replaces only what
its marker proves it wrote, creates run and output folders exclusively, and refuses anything else."""

from __future__ import annotations

import json

import yaml

from ssmseg.outputs import MARKER
from tests.cli.conftest import TINY, assert_one_line_error, invoke, snapshot


def test_eval_out_never_deletes_runs_checkpoints_or_user_files(world, tmp_path):
    runs = tmp_path / "runs"
    run = world.copy_run(runs / "r")
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "sub" / "data.csv").write_text("1,2")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    before = snapshot(tmp_path)
    for out, what in (
        (runs, "run folders"),
        (run, "a training run"),
        (run / "checkpoints", "did not write"),
        (mine, "did not write"),
        (afile, "is a file"),
    ):
        result = invoke("eval", run, "--out", out)
        assert_one_line_error(result, 1, str(out), what, "choose another --out")
    assert snapshot(tmp_path) == before  # nothing deleted, nothing added


def test_eval_out_replaces_only_the_same_evaluation(world, tmp_path):
    run = world.copy_run(tmp_path / "r")
    out = tmp_path / "metrics"
    assert invoke("eval", run, "--out", out).exit_code == 0
    assert json.loads((out / MARKER).read_text())["kind"] == "eval"
    assert invoke("eval", run, "--out", out).exit_code == 0  # the same evaluation again: its own folder is replaced
    other = invoke("eval", run, "--out", out, "--set", "eval.tta=true")  # another evaluation: refused
    assert_one_line_error(other, 1, str(out), "another evaluation", "choose another --out")
    (out / "mine.txt").write_text("added by the user")
    again = invoke("eval", run, "--out", out)
    assert_one_line_error(again, 1, "mine.txt", "did not write")
    assert (out / "mine.txt").read_text() == "added by the user"


def test_prep_force_never_deletes_a_folder_prep_did_not_write(world, tmp_path):
    cfg = world.prep_yaml(tmp_path / "prep.yaml")
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "todo.txt").write_text("keep me")
    (notes / "sub" / "x.txt").write_text("and me")
    before = snapshot(tmp_path)
    for force in ([], ["--force"]):
        result = invoke("prep", "--config", cfg, "--out", notes, *force)
        assert_one_line_error(result, 1, str(notes), "did not write", "choose another --out")
        assert "other inputs" not in result.output and "--force" not in result.output
    assert snapshot(tmp_path) == before


def test_prep_force_replaces_only_its_own_dataset(world, tmp_path):
    out = tmp_path / "ds"
    assert invoke("prep", "--config", world.prep_yaml(tmp_path / "a.yaml"), "--out", out).exit_code == 0
    other = world.prep_yaml(tmp_path / "b.yaml", split={"block_size": 16, "folds": 2, "seed": 3})
    assert_one_line_error(invoke("prep", "--config", other, "--out", out), 1, "other inputs", "--force")
    assert invoke("prep", "--config", other, "--out", out, "--force").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["split"]["seed"] == 3
    (out / "readme.txt").write_text("the user's")
    result = invoke("prep", "--config", world.prep_yaml(tmp_path / "a.yaml"), "--out", out, "--force")
    assert_one_line_error(result, 1, "readme.txt", "did not write")
    assert (out / "readme.txt").is_file() and (out / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_train_with_the_name_of_a_finished_run_writes_a_new_folder(world, tmp_path):
    out = tmp_path / "runs"
    world.copy_run(out / "done")
    before = snapshot(out / "done")
    result = invoke(
        "train", *TINY, "--set", f"data.dataset={world.dataset}", "--out", out, "--set", "runtime.name=done"
    )
    assert result.exit_code == 0, result.output
    assert snapshot(out / "done") == before  # checkpoints, history and TensorBoard events untouched
    assert (out / "done-2" / "checkpoints" / "best.pt").is_file() and "done-2" in result.output
    assert yaml.safe_load((out / "done-2" / "config.yaml").read_text())["runtime"]["name"] == "done-2"


def test_two_runs_started_in_the_same_second_get_two_folders(world, tmp_path, monkeypatch):
    monkeypatch.setattr("ssmseg.experiments.train.time.strftime", lambda *a: "20250101-120000")
    args = ["train", *TINY, "--set", f"data.dataset={world.dataset}", "--out", tmp_path]
    assert invoke(*args).exit_code == 0 and invoke(*args).exit_code == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["unet-20250101-120000", "unet-20250101-120000-2"]
    for name in folders:
        assert len(json.loads((tmp_path / name / "history.json").read_text())["epochs"]) == 1
        assert len(list((tmp_path / name / "tensorboard").iterdir())) == 1  # no mixed event files


def test_eval_of_a_scene_keeps_the_test_split_metrics(world, tmp_path):
    run = world.copy_run(tmp_path / "r")
    assert invoke("eval", run).exit_code == 0
    test_metrics = (run / "eval" / "test" / "metrics.json").read_bytes()
    result = invoke("eval", run, "--input", world.image, "--mask", world.mask)
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "test" / "metrics.json").read_bytes() == test_metrics
    scene = json.loads((run / "eval" / "a" / "metrics.json").read_text())
    assert scene["protocol"]["split"] == "scenes"
    # metrics.json says what it evaluated; a scene the run was trained on is flagged
    assert scene["evaluated"]["run"] == str(run) and scene["evaluated"]["model"] == "unet"
    assert scene["evaluated"]["checkpoint"].endswith("checkpoints/best.pt") and scene["evaluated"]["epoch"] == 1
    assert "a scene this run was trained on" in result.output
    # the same evaluation again replaces its own folder; another one gets a new folder
    assert invoke("eval", run).exit_code == 0 and invoke("eval", run, "--set", "eval.tta=true").exit_code == 0
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["a", "test", "test-2"]


def _field_sources(tmp_path):
    """The ways reconstruction prep reads fields: the sinusoid generator, a raster, a .npy stack."""
    import numpy as np

    from tests.data.helpers import write_tif

    rng = np.random.default_rng(0)
    tif = write_tif(tmp_path / "in" / "f.tif", rng.random((2, 32, 32)).astype(np.float32))
    npy = tmp_path / "in" / "s.npy"
    np.save(npy, rng.random((12, 8, 8)).astype(np.float32))
    cfgs = {}
    for name, prep in (
        ("raster", {"images": [str(tif)], "fields": {"size": 8}}),
        ("stack", {"images": [str(npy)], "split": {"mode": "random"}}),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"task": {"name": "reconstruction"}, "prep": prep}))
        cfgs[name] = ["--config", path]
    sinusoids = ["--synthetic", "sinusoids", "--set", "prep.fields.count=12", "--set", "prep.fields.size=8"]
    return {"sinusoids": sinusoids, **cfgs}


def test_reconstruction_prep_never_deletes_a_users_folder(tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    (mine / "sub" / "x.txt").write_text("and mine")
    for name, args in _field_sources(tmp_path).items():
        before = snapshot(tmp_path)
        for force in ([], ["--force"]):
            result = invoke("prep", *args, "--out", mine, *force)
            assert_one_line_error(result, 1, str(mine), "did not write", "choose another --out")
        assert snapshot(tmp_path) == before, name
        assert (mine / "notes.txt").read_text() == "my notes"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_reconstruction_prep_force_replaces_its_own_dataset_only(tmp_path):
    for name, args in _field_sources(tmp_path).items():
        out = tmp_path / f"ds-{name}"
        assert invoke("prep", *args, "--out", out).exit_code == 0, name
        assert json.loads((out / MARKER).read_text())["kind"] == "dataset"
        again = invoke("prep", *args, "--out", out)
        assert again.exit_code == 0 and "up to date" in again.output
        other = [*args, "--set", "prep.split.seed=5"]
        assert_one_line_error(invoke("prep", *other, "--out", out), 1, "other inputs", "--force")
        assert invoke("prep", *other, "--out", out, "--force").exit_code == 0, name
        assert json.loads((out / "manifest.json").read_text())["split"]["seed"] == 5
        (out / "readme.txt").write_text("the user's")
        result = invoke("prep", *args, "--out", out, "--force")
        assert_one_line_error(result, 1, "readme.txt", "did not write")
        assert (out / "readme.txt").is_file() and (out / "fields.npy").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_field_dataset_from_before_markers_is_still_replaced_with_force(tmp_path):
    args = _field_sources(tmp_path)["sinusoids"]
    out = tmp_path / "old"
    assert invoke("prep", *args, "--out", out).exit_code == 0
    (out / MARKER).unlink()  # as the earlier prep wrote it
    result = invoke("prep", *args, "--set", "prep.split.seed=5", "--out", out, "--force")
    assert result.exit_code == 0, result.output
