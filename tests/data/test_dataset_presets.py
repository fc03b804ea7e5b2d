"""Dataset presets (ISPRS Vaihingen and Potsdam, UAVid, LoveDA): the classes, palettes and crop sizes the
datasets ship with, and ``prep --check`` on tiny fake folders laid out as each one ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ssmseg.config.loading import preset_text, validate_layers
from ssmseg.data.check import check_sources
from ssmseg.data.labels import parse_color
from ssmseg.data.pairing import pair_key
from ssmseg.data.shipped import rooted
from ssmseg.errors import InputError
from tests.cli.conftest import invoke
from tests.data.helpers import write_tif

ISPRS = {
    "#FFFFFF": "impervious_surfaces",
    "#0000FF": "building",
    "#00FFFF": "low_vegetation",
    "#00FF00": "tree",
    "#FFFF00": "car",
    "#FF0000": "clutter",
}
UAVID = {
    "#000000": "clutter",
    "#800000": "building",
    "#804080": "road",
    "#008000": "tree",
    "#808000": "low_vegetation",
    "#400080": "moving_car",
    "#C000C0": "static_car",
    "#404000": "human",
}
SIZE = 32


def preset(name: str) -> dict:
    return yaml.safe_load(preset_text(name))


def config(name: str):
    """The preset as a validated config, with 16-px crops for the tiny fake tiles."""
    data = preset(name)
    data["data"]["crop_size"] = 16
    return validate_layers([(f"preset {name}", data)])


def _colour_mask(colours: list[str], seed: int) -> np.ndarray:
    """(3, SIZE, SIZE) uint8 of 8x8 blocks in the given colours, every colour present."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(np.resize(np.arange(len(colours)), (SIZE // 8) ** 2)).reshape(SIZE // 8, SIZE // 8)
    rgb = np.array([parse_color(c) for c in colours], np.uint8)[idx]  # (4, 4, 3)
    return rgb.repeat(8, 0).repeat(8, 1).transpose(2, 0, 1)


def _image(seed: int, bands: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (bands, SIZE, SIZE), dtype=np.uint8)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.transpose(1, 2, 0) if array.ndim == 3 else array).save(path)


def fake_vaihingen(root: Path) -> Path:
    data = preset("isprs_vaihingen")
    for k, image in enumerate(data["prep"]["images"]):
        write_tif(root / image, _image(k), crs=None)
        write_tif(root / image.replace("/top/", "/gts_for_participants/"), _colour_mask(list(ISPRS), k), crs=None)
    write_tif(root / "ISPRS_semantic_labeling_Vaihingen/top/top_mosaic_09cm_area2.tif", _image(99), crs=None)  # test
    return root


def fake_potsdam(root: Path) -> Path:
    for k, image in enumerate(preset("isprs_potsdam")["prep"]["images"]):
        tile = Path(image).name.removesuffix("_RGB.tif")
        write_tif(root / image, _image(k), crs=None)
        write_tif(root / "5_Labels_for_participants" / f"{tile}_label.tif", _colour_mask(list(ISPRS), k), crs=None)
    write_tif(root / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif", _image(99), crs=None)  # a test tile: no label
    return root


def fake_uavid(root: Path) -> Path:
    for split, seqs in (("uavid_train", (1, 2)), ("uavid_val", (16,))):
        for seq in seqs:
            for k, frame in enumerate(("000000", "000100")):
                _png(root / split / f"seq{seq}" / "Images" / f"{frame}.png", _image(seq * 10 + k))
                _png(root / split / f"seq{seq}" / "Labels" / f"{frame}.png", _colour_mask(list(UAVID), seq + k))
    _png(root / "uavid_test" / "seq21" / "Images" / "000000.png", _image(7))
    return root


def fake_loveda(root: Path) -> Path:
    for split, domain, ids in (("Train", "Rural", (0, 1)), ("Train", "Urban", (1366,)), ("Val", "Rural", (2522,))):
        for i in ids:
            _png(root / split / domain / "images_png" / f"{i}.png", _image(i))
            labels = np.resize(np.arange(8, dtype=np.uint8), SIZE * SIZE).reshape(SIZE, SIZE)  # 0 (no-data) to 7
            _png(root / split / domain / "masks_png" / f"{i}.png", np.roll(labels, i, axis=1))
    _png(root / "Test" / "Urban" / "images_png" / "4191.png", _image(3))
    return root


FAKES = {
    "isprs_vaihingen": (fake_vaihingen, 16, 6),
    "isprs_potsdam": (fake_potsdam, 24, 6),
    "uavid": (fake_uavid, 6, 8),
    "loveda": (fake_loveda, 4, 7),
}


def _nested_pairing() -> bool:
    """Whether pairing reads the nested path (the prep branch): UAVid's frames repeat in every sequence."""
    pattern = preset("uavid")["prep"]["pair_pattern"]
    try:
        keys = {pair_key(Path(f"u/uavid_train/seq{s}/Images/000000.png"), pattern) for s in (1, 2)}
    except InputError:
        return False
    return len(keys) == 2


def test_the_palettes_classes_and_crops_are_the_datasets_own():
    for name in ("isprs_vaihingen", "isprs_potsdam"):
        data = preset(name)
        assert data["prep"]["palette"] == ISPRS and data["data"]["crop_size"] == 512
        assert data["eval"]["exclude_classes"] == ["clutter"] and data["eval"]["boundary_ignore"] == 3
    assert preset("uavid")["prep"]["palette"] == UAVID and preset("uavid")["data"]["crop_size"] == 1024
    loveda = preset("loveda")["prep"]
    assert loveda["class_map"] == {v: v - 1 for v in range(1, 8)} and loveda["ignore_values"] == [0]
    assert loveda["classes"] == ["background", "building", "road", "water", "barren", "forest", "agriculture"]
    assert (
        len(preset("isprs_vaihingen")["prep"]["images"]) == 16 and len(preset("isprs_potsdam")["prep"]["images"]) == 24
    )


@pytest.mark.parametrize("name", list(FAKES))
def test_prep_check_passes_a_folder_laid_out_as_the_dataset_ships(name, tmp_path):
    if name == "uavid" and not _nested_pairing():
        pytest.skip("UAVid pairs by sequence and frame: nested-path pairing arrives with the prep branch")
    make, pairs, classes = FAKES[name]
    report = check_sources(rooted(config(name), make(tmp_path / "download")))
    assert not report.problems, report.problems
    assert f"{pairs} image/mask pairs, {classes} classes" in report.notes[-1]


@pytest.mark.parametrize("name", ["isprs_vaihingen", "loveda"])
def test_prep_check_finds_a_wrong_colour_a_missing_tile_and_a_wrong_folder(name, tmp_path):
    make = FAKES[name][0]
    root = make(tmp_path / "download")
    first = sorted(p for p in root.rglob("*") if p.is_file() and ("gts_for" in str(p) or "masks_png" in str(p)))[0]
    if name == "loveda":
        _png(first, np.full((SIZE, SIZE), 9, np.uint8))  # a value LoveDA does not have
        expected = "9: "
    else:
        write_tif(first, np.full((3, SIZE, SIZE), 0x12, np.uint8), crs=None)  # a colour not in the palette
        expected = "#121212"
    problems = check_sources(rooted(config(name), root)).problems
    assert any(expected in p for p in problems), problems
    (sorted(p for p in root.rglob("*") if p.is_file() and ("/top/" in str(p) or "images_png" in str(p)))[1]).unlink()
    problems = check_sources(rooted(config(name), root)).problems
    assert any("no image" in p or "matches no file" in p for p in problems), problems
    problems = check_sources(rooted(config(name), tmp_path / "elsewhere")).problems
    assert problems and "matches no file" in problems[0]


def test_cli_prep_check_takes_the_download_folder(tmp_path):
    root = fake_loveda(tmp_path / "LoveDA")
    result = invoke("prep", "--preset", "loveda", "--check", root, "--set", "data.crop_size=16")
    assert result.exit_code == 0, result.output
    assert "4 image/mask pairs, 7 classes" in result.output and result.output.strip().endswith(": ok")
    result = invoke("prep", "--preset", "loveda", "--check", tmp_path, "--set", "data.crop_size=16")
    assert result.exit_code == 1 and "matches no file" in result.output


def test_cli_prep_check_of_an_isprs_download(tmp_path):
    root = fake_vaihingen(tmp_path / "Vaihingen")
    result = invoke("prep", "--preset", "isprs_vaihingen", "--check", root, "--set", "data.crop_size=16")
    assert result.exit_code == 0, result.output
    assert "image/mask pairs, 6 classes: impervious_surfaces, building, low_vegetation, tree, car, clutter" in (
        result.output
    )
    assert f"{root}: ok" in result.output
