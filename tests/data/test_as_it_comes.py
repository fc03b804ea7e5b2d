"""Data as it comes: tiles in nested folders with the same file names, palette-indexed masks, held-out test
scenes, flattened hyperspectral .mat cubes with abundance ground truth, overlapping windows counted once, and
one warning for scenes without a CRS."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.config import build_config
from ssmseg.data.check import check_sources
from ssmseg.data.pairing import find_pairs
from ssmseg.data.prepare import prepare
from ssmseg.errors import InputError
from tests.data.helpers import prep_config, scene
from tests.data.test_shared_data import DUBAI_PALETTE

PALETTE = {"#3C1098": "building", "#8429F6": "land", "#6EC1E4": "road"}
COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228)]


def labels_of(size: int, shift: int = 0) -> np.ndarray:
    return (((np.arange(size)[None, :] // 8 + np.arange(size)[:, None] // 8) + shift) % 3).astype(np.uint8)


def save_png(path, array: np.ndarray, palette: list | None = None) -> None:
    """(H, W) or (H, W, 3) uint8 as PNG; with ``palette``, a one-band palette-indexed PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette is None:
        Image.fromarray(array).save(path)
        return
    img = Image.fromarray(array, mode="P")
    img.putpalette([v for c in palette for v in c] + [0] * (768 - 3 * len(palette)))
    img.save(path)


def nested_tiles(root, tiles: int = 2, names: tuple[str, ...] = ("x", "y"), size: int = 32) -> None:
    """tile_k/images/<name>.png (RGB: the tile number in band 0) and tile_k/masks/<name>.png (RGB colours)."""
    for k in range(1, tiles + 1):
        for j, name in enumerate(names):
            lab = labels_of(size, shift=k + j)
            image = np.stack([np.full((size, size), k), lab * 50, np.full((size, size), j)], -1).astype(np.uint8)
            save_png(root / f"tile_{k}" / "images" / f"{name}.png", image)
            save_png(root / f"tile_{k}" / "masks" / f"{name}.png", np.array(COLOURS, np.uint8)[lab])


def config(crop: int = 16, **prep):
    return build_config(explicit={"data": {"crop_size": crop}, "prep": prep})


# --- pairing by path ---------------------------------------------------------------------------------------


def test_tiles_with_the_same_file_names_pair_within_their_folder(tmp_path):
    nested_tiles(tmp_path, tiles=3)
    cfg = config(
        images=[str(tmp_path / "tile_*" / "images" / "*.png")],
        masks=[str(tmp_path / "tile_*" / "masks" / "*.png")],
        palette=PALETTE,
    )
    pairs = find_pairs(cfg.prep)
    assert len(pairs) == 6
    for p in pairs:
        assert p.image.parent.parent == p.mask.parent.parent and p.image.stem == p.mask.stem
    m = prepare(cfg, tmp_path / "ds").manifest
    assert len(m["sources"]) == 6 and check_sources(cfg).problems == []


def test_pair_pattern_may_match_the_whole_path(tmp_path):
    nested_tiles(tmp_path, tiles=2)
    for k in (1, 2):  # masks renamed as some datasets ship them: x_mask.png
        for mask in (tmp_path / f"tile_{k}" / "masks").iterdir():
            mask.rename(mask.with_name(f"{mask.stem}_mask.png"))
    cfg = config(
        images=[str(tmp_path / "tile_*" / "images" / "*.png")],
        masks=[str(tmp_path / "tile_*" / "masks" / "*.png")],
        palette=PALETTE,
        pair_pattern=r"(tile_\d+)/\w+/([a-z]+)(?:_mask)?\.png$",
    )
    pairs = find_pairs(cfg.prep)
    assert sorted(p.key for p in pairs) == ["tile_1/x", "tile_1/y", "tile_2/x", "tile_2/y"]
    assert all(
        p.mask.name == f"{p.image.stem}_mask.png" and p.image.parent.parent == p.mask.parent.parent for p in pairs
    )


def test_ambiguous_pairs_are_one_error_naming_both_masks(tmp_path):
    nested_tiles(tmp_path, tiles=2, names=("x",))
    shutil.copy(tmp_path / "tile_1" / "images" / "x.png", tmp_path / "x.png")  # same distance to both masks
    cfg = config(
        images=[str(tmp_path / "x.png")], masks=[str(tmp_path / "tile_*" / "masks" / "*.png")], palette=PALETTE
    )
    with pytest.raises(InputError, match=r"matches masks .* equally.*pair_pattern"):
        find_pairs(cfg.prep)


def test_prep_check_pairs_the_dubai_tiles_as_shipped(shared_data, tmp_path):
    """A few tiles of the shared Dubai dataset, copied with their layout (every tile holds image_part_001...)."""
    src = shared_data / "aerial" / "dubai"
    for tile in ("tile_1", "tile_2", "tile_3"):
        for kind, ext in (("images", "jpg"), ("masks", "png")):
            (tmp_path / tile / kind).mkdir(parents=True)
            for name in ("image_part_001", "image_part_002"):
                shutil.copy(src / tile / kind / f"{name}.{ext}", tmp_path / tile / kind / f"{name}.{ext}")
    palette = DUBAI_PALETTE
    prep = {
        "images": [str(tmp_path / "*" / "images" / "*.jpg")],
        "masks": [str(tmp_path / "*" / "masks" / "*.png")],
        "palette": palette,
        "ignore_colors": ["#000000"],
    }
    cfg_file = tmp_path / "dubai.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump({"data": {"crop_size": 128}, "prep": prep}))
    result = CliRunner().invoke(app, ["prep", "--check", str(cfg_file)])
    assert result.exit_code == 0, result.output
    assert "6 image/mask pairs" in result.output
    assert result.output.count("no CRS") == 1  # one line for the six scenes, not one per file
    pairs = find_pairs(build_config(explicit={"prep": prep}).prep)
    assert {(p.image.parent.parent.name, p.image.stem) for p in pairs} == {
        (p.mask.parent.parent.name, p.mask.stem) for p in pairs
    } and all(p.image.parent.parent == p.mask.parent.parent for p in pairs)


# --- palette-indexed masks ---------------------------------------------------------------------------------


def test_palette_indexed_masks_decode_through_their_colour_table(tmp_path):
    lab = labels_of(32)
    # The table's order differs from prep.palette's: indices are not classes, colours are.
    table = [COLOURS[2], COLOURS[0], COLOURS[1]]
    index = np.array([1, 2, 0], np.uint8)[lab]  # class c is stored as the table index of its colour
    save_png(tmp_path / "msk" / "a.png", index, palette=table)
    save_png(tmp_path / "img" / "a.png", np.stack([lab * 80] * 3, -1).astype(np.uint8))
    cfg = config(
        images=[str(tmp_path / "img" / "*.png")],
        masks=[str(tmp_path / "msk" / "*.png")],
        palette=PALETTE,
        split={"block_size": 16, "folds": 2},
    )
    assert check_sources(cfg).problems == []
    prepare(cfg, tmp_path / "ds")
    images, labels = np.load(tmp_path / "ds" / "images.npy"), np.load(tmp_path / "ds" / "labels.npy")
    truth = images[:, 0] // 80
    keep = labels != 255
    assert keep.sum() > 500 and (labels[keep] == truth[keep]).all()


def test_a_mask_that_cannot_be_decoded_is_named(tmp_path):
    save_png(tmp_path / "msk" / "a.png", labels_of(32))  # one band, no colour table
    save_png(tmp_path / "img" / "a.png", np.zeros((32, 32, 3), np.uint8))
    cfg = config(images=[str(tmp_path / "img" / "*.png")], masks=[str(tmp_path / "msk" / "*.png")], palette=PALETTE)
    problems = check_sources(cfg).problems
    assert len(problems) == 1 and str(tmp_path / "msk" / "a.png") in problems[0] and "prep.classes" in problems[0]
    with pytest.raises(InputError, match=r"a\.png' has 1 band"):
        prepare(cfg, tmp_path / "ds")
    # Colour masks read as index masks: the message names the file and the fix.
    rgb = config(images=[str(tmp_path / "img" / "*.png")], masks=[str(tmp_path / "img" / "*.png")], classes=["a"])
    with pytest.raises(InputError, match=r"img/a.png' has 3 bands.*prep.palette"):
        prepare(rgb, tmp_path / "ds2")


# --- held-out test scenes ----------------------------------------------------------------------------------


def test_whole_scenes_can_be_held_out_for_test(tmp_path):
    for k, name in enumerate("abc"):
        scene(tmp_path, name, size=48, seed=k)
    cfg = prep_config(
        tmp_path,
        split={"block_size": 16, "folds": 2, "ratios": [0.7, 0.3, 0.0], "test": [str(tmp_path / "img" / "c.tif")]},
    )
    m = prepare(cfg, tmp_path / "ds").manifest
    held = [i for i, s in enumerate(m["sources"]) if s["image"]["path"].endswith("c.tif")]
    assert len(held) == 1
    for p in m["patches"]:
        assert (p["split"] == "test") == (p["source"] in held)
        assert (p["fold"] == -1) == (p["source"] in held)
    assert {p["split"] for p in m["patches"] if p["source"] not in held} == {"train", "val"}
    assert all(n > 0 for n in m["class_counts"]["test"])
    # With a test share, the remaining scenes still give test blocks, as configured.
    cfg = prep_config(tmp_path, split={"block_size": 16, "folds": 2, "test": [str(tmp_path / "img" / "c*")]})
    m = prepare(cfg, tmp_path / "ds2").manifest
    assert {p["split"] for p in m["patches"] if p["source"] not in held} == {"train", "val", "test"}


def test_a_held_out_pattern_matching_no_scene_is_named(tmp_path):
    scene(tmp_path, "a")
    cfg = prep_config(tmp_path, split={"block_size": 16, "folds": 2, "test": [str(tmp_path / "img" / "z*.tif")]})
    with pytest.raises(InputError, match=r"prep.split.test: '.*z\*.tif' matches none"):
        prepare(cfg, tmp_path / "ds")
    cfg = prep_config(tmp_path, split={"block_size": 16, "folds": 2, "test": [str(tmp_path / "img" / "*.tif")]})
    with pytest.raises(InputError, match="every scene"):
        prepare(cfg, tmp_path / "ds")


# --- hyperspectral .mat files as distributed ---------------------------------------------------------------


def flat_scene(tmp_path, rows: int = 24, cols: int = 16, bands: int = 5, classes: int = 3, names=("nRow", "nCol")):
    """A cube stored as Y (bands, pixels) in MATLAB's column-major pixel order with row/column scalars, and
    its ground truth as abundances A (classes, pixels) beside endmembers M (bands, classes)."""
    rng = np.random.default_rng(0)
    cube = rng.random((rows, cols, bands)).astype(np.float32)
    lab = labels_of(max(rows, cols))[:rows, :cols] % classes
    abund = rng.random((rows, cols, classes)) * 0.4
    abund[np.arange(rows)[:, None], np.arange(cols)[None], lab] += 0.6  # the labelled class dominates
    flat = lambda a: a.reshape(rows * cols, -1, order="F").T  # noqa: E731  (MATLAB's reshape)
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    scipy.io.savemat(
        tmp_path / "img" / "scene.mat",
        {"Y": flat(cube), names[0]: rows, names[1]: cols, "SlectBands": np.arange(bands)[:, None] + 1},
    )
    scipy.io.savemat(tmp_path / "gt" / "scene.mat", {"A": flat(abund), "M": rng.random((bands, classes))})
    return cube, lab


def window_of(m, i):
    r, c, h, w = m["patches"][i]["window"]
    return slice(r, r + h), slice(c, c + w)


@pytest.mark.parametrize("names", [("nRow", "nCol"), ("lines_n", "samples_n")])
def test_flattened_mat_cube_with_abundance_ground_truth(tmp_path, names):
    cube, lab = flat_scene(tmp_path, names=names)
    keys = {} if names == ("nRow", "nCol") else {"rows_key": names[0], "cols_key": names[1]}
    cfg = config(
        crop=8,
        images=[str(tmp_path / "img" / "scene.mat")],
        masks=[str(tmp_path / "gt" / "scene.mat")],
        labels_from="argmax",
        classes=["a", "b", "c"],
        normalize="minmax",
        split={"block_size": 8, "folds": 2},
        **keys,
    )
    assert check_sources(cfg).problems == []
    m = prepare(cfg, tmp_path / "ds").manifest
    assert m["bands"] == 5 and m["sources"][0]["image"]["height"] == 24 and m["sources"][0]["image"]["width"] == 16
    images, labels = np.load(tmp_path / "ds" / "images.npy"), np.load(tmp_path / "ds" / "labels.npy")
    for i in range(len(m["patches"])):
        rows, cols = window_of(m, i)
        np.testing.assert_array_equal(images[i], cube[rows, cols].transpose(2, 0, 1))
        keep = labels[i] != 255
        np.testing.assert_array_equal(labels[i][keep], lab[rows, cols][keep])


def test_abundance_maps_as_a_cube_and_missing_size_keys(tmp_path):
    _cube, lab = flat_scene(tmp_path)
    abund = np.eye(3, dtype=np.float32)[lab]  # (H, W, classes)
    scipy.io.savemat(tmp_path / "gt" / "scene.mat", {"abund": abund})
    cfg = config(
        crop=8,
        images=[str(tmp_path / "img" / "scene.mat")],
        masks=[str(tmp_path / "gt" / "scene.mat")],
        labels_from="argmax",
        split={"block_size": 8, "folds": 2},
    )
    m = prepare(cfg, tmp_path / "ds").manifest
    assert m["classes"] == ["class_0", "class_1", "class_2"]
    total = np.sum([m["class_counts"][s] for s in ("train", "val", "test")], axis=0)
    assert total.sum() <= lab.size and total.sum() > 0.8 * lab.size
    bad = config(
        crop=8,
        images=[str(tmp_path / "img" / "scene.mat")],
        masks=[str(tmp_path / "gt" / "scene.mat")],
        labels_from="argmax",
        rows_key="height_px",
    )
    with pytest.raises(InputError, match=r"prep.rows_key: '.*scene.mat' has no scalar 'height_px'"):
        prepare(bad, tmp_path / "ds2")


# --- overlapping windows are counted once --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"split": {"block_size": 24, "folds": 2}},  # last window shifted inward
        {"overlap": 0.5, "split": {"block_size": 32, "folds": 2, "buffer": 0}},
    ],
)
def test_overlapping_windows_count_each_pixel_once(tmp_path, kw):
    img, _ = scene(tmp_path, size=96)
    m = prepare(prep_config(tmp_path, **kw), tmp_path / "ds").manifest
    import rasterio

    with rasterio.open(img) as src:
        data = src.read().astype(np.float64)
    covered = {k: np.zeros((96, 96), bool) for k in ("train", "val", "test")}
    for p in m["patches"]:
        r, c, h, w = p["window"]
        covered[p["split"]][r : r + h, c : c + w] = True
    total = sum(sum(m["class_counts"][s]) for s in ("train", "val", "test"))
    assert total == 96 * 96  # every pixel of the scene is labelled and lies in exactly one block
    assert sum(m["class_counts"]["train"]) == covered["train"].sum()
    folds = sum(sum(m["class_counts"][f"fold_{k}"]) for k in range(2))
    assert folds == 96 * 96 - sum(m["class_counts"]["test"])
    train = m["stats"]["train"]
    assert train["pixels"] == covered["train"].sum()
    np.testing.assert_allclose(train["mean"], data[:, covered["train"]].mean(1), rtol=1e-9)
    np.testing.assert_allclose(train["std"], data[:, covered["train"]].std(1), rtol=1e-6)


# --- one warning for scenes without a CRS --------------------------------------------------------------------


def test_scenes_without_crs_give_one_warning_per_run(tmp_path, caplog):
    for k, name in enumerate("abc"):
        scene(tmp_path, name, size=32, seed=k, crs=None)
    cfg = prep_config(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check_sources(cfg)
        result = prepare(cfg, tmp_path / "ds")
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
    for lines in (report.notes, result.warnings):
        crs = [line for line in lines if "no CRS" in line]
        assert len(crs) == 1 and "3 of 3 scenes" in crs[0], lines
