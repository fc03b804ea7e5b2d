"""Hyperspectral benchmark presets (Salinas-A, Indian Pines, Pavia University, Salinas, Houston 2013): the files,
keys, classes and split they ship with, ``prep --check`` on tiny fake MATLAB files laid out as each one ships,
and a prep of them with the default spatially disjoint block split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml

from ssmseg.config.loading import preset_text, validate_layers
from ssmseg.data.check import check_sources
from ssmseg.data.prepare import prepare
from ssmseg.data.shipped import rooted
from tests.cli.conftest import invoke

# name: (image file, image key, mask file, mask key, bands, class values as the files hold them)
SHIPPED = {
    "salinas_a": (
        "SalinasA_corrected.mat",
        "salinasA_corrected",
        "SalinasA_gt.mat",
        "salinasA_gt",
        204,
        [1, 10, 11, 12, 13, 14],
    ),
    "indian_pines": (
        "Indian_pines_corrected.mat",
        "indian_pines_corrected",
        "Indian_pines_gt.mat",
        "indian_pines_gt",
        200,
        list(range(1, 17)),
    ),
    "pavia_university": ("PaviaU.mat", "paviaU", "PaviaU_gt.mat", "paviaU_gt", 103, list(range(1, 10))),
    "salinas": ("Salinas_corrected.mat", "salinas_corrected", "Salinas_gt.mat", "salinas_gt", 204, list(range(1, 17))),
    "houston2013": ("Houston.mat", "Houston", "Houston_gt.mat", "Houston_gt", 144, list(range(1, 16))),
}
ROWS, COLS = 48, 40  # tiny fake scenes (the real ones are 83 x 86 to 349 x 1905)


def preset(name: str) -> dict:
    return yaml.safe_load(preset_text(name))


def fake_download(name: str, root: Path, values: list[int] | None = None) -> Path:
    """The dataset's two MATLAB files with its keys, dtypes and axis order (rows x cols x bands), every class
    present in 8 x 8 blocks, unlabelled (0) pixels between them, and one extra key as the real files carry."""
    image, ikey, mask, mkey, bands, shipped = SHIPPED[name]
    values = shipped if values is None else values
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    blocks = np.resize(np.array(values), (ROWS // 8) * (COLS // 8))
    gt = rng.permutation(blocks).reshape(ROWS // 8, COLS // 8).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    gt[::7] = 0
    cube = (rng.normal(size=(ROWS, COLS, bands)) * 50 + gt[..., None] * 20 + 1000).astype(np.int16)
    scipy.io.savemat(root / image, {ikey: cube})
    scipy.io.savemat(root / mask, {mkey: gt})
    return root


def config(name: str, crop: int = 8, block: int | None = None):
    """The preset as a validated config, with crops (and blocks) small enough for the fake scenes."""
    layers = preset(name)
    layers["data"]["crop_size"] = crop
    if block is not None:
        layers["prep"]["split"]["block_size"] = block
    return validate_layers([(f"preset {name}", layers)])


@pytest.mark.parametrize("name", list(SHIPPED))
def test_the_files_keys_classes_and_split_are_the_datasets_own(name):
    image, ikey, mask, mkey, _, values = SHIPPED[name]
    prep = preset(name)["prep"]
    assert (prep["images"], prep["masks"], prep["image_key"], prep["mask_key"]) == ([image], [mask], ikey, mkey)
    assert prep["class_map"] == {v: i for i, v in enumerate(values)} and prep["ignore_values"] == [0]
    assert len(prep["classes"]) == len(values) == len(set(prep["classes"]))
    assert prep["split"]["mode"] == "blocks" and prep["split"]["folds"] == 3  # spatially disjoint by default
    assert prep["split"]["block_size"] >= preset(name)["data"]["crop_size"]


@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_cube_preset_trains_with_the_hyperspectral_recipe(name):
    # the recipe chosen and measured as preset hyperspectral; a dataset preset adds its files, classes, crop and
    # block size (the larger scenes use the usual 32 px crop)
    recipe, own = preset("hyperspectral"), preset(name)
    assert {k: v for k, v in own.items() if k not in ("prep", "data")} == {
        k: v for k, v in recipe.items() if k not in ("prep", "data")
    }
    assert own["data"]["batch_size"] == recipe["data"]["batch_size"]
    assert own["prep"]["split"]["folds"] == recipe["prep"]["split"]["folds"]


@pytest.mark.parametrize("name", list(SHIPPED))
def test_prep_check_passes_the_files_as_they_ship(name, tmp_path):
    root = fake_download(name, tmp_path / "download")
    report = check_sources(rooted(config(name), root))
    assert not report.problems, report.problems
    assert f"1 image/mask pairs, {len(SHIPPED[name][5])} classes" in report.notes[-1]


def test_prep_check_finds_a_value_the_dataset_does_not_have_and_a_missing_file(tmp_path):
    root = fake_download("pavia_university", tmp_path / "download", values=list(range(1, 11)))  # 10 is not Pavia's
    problems = check_sources(rooted(config("pavia_university"), root)).problems
    assert any("10" in p for p in problems), problems
    (root / "PaviaU.mat").unlink()
    problems = check_sources(rooted(config("pavia_university"), root)).problems
    assert problems and any("matches no file" in p or "no image" in p for p in problems), problems


def test_cli_prep_check_then_prep_with_the_block_split(tmp_path, monkeypatch):
    root = fake_download("indian_pines", tmp_path / "IndianPines")
    result = invoke(
        "prep",
        "--preset",
        "indian_pines",
        "--check",
        root,
        "--set",
        "data.crop_size=8",
        "--set",
        "prep.split.block_size=8",
    )
    assert result.exit_code == 0, result.output
    assert "16 classes" in result.output and result.output.strip().endswith(": ok")
    monkeypatch.chdir(root)
    out = prepare(config("indian_pines", block=8), tmp_path / "prepared").out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bands"] == 200 and manifest["classes"] == preset("indian_pines")["prep"]["classes"]
    assert manifest["split"]["mode"] == "blocks" and manifest["split"]["folds"] == 3
    folds = {p["fold"] for p in manifest["patches"] if p["fold"] >= 0}
    assert folds == {0, 1, 2}
