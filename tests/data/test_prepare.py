"""ssmseg prep on tiny generated GeoTIFFs: georeference, leak-free splits, train-only statistics, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssmseg.config import build_config
from ssmseg.data.check import check_dataset, check_sources
from ssmseg.data.io import sha256_file
from ssmseg.data.prepare import prepare
from ssmseg.errors import ConfigError, InputError
from tests.data.helpers import prep_config, scene, write_tif


def arrays(out):
    return {k: np.load(out / f"{k}.npy") for k in ("images", "labels", "valid")}


def test_patches_keep_crs_and_window_transform(tmp_path):
    scene(tmp_path)
    result = prepare(prep_config(tmp_path), tmp_path / "ds")
    m = result.manifest
    assert m["sources"][0]["image"]["crs"] == "EPSG:32618"
    for p in m["patches"]:
        r, c = p["window"][:2]
        assert p["transform"] == pytest.approx([30.0, 0.0, 300000.0 + 30 * c, 0.0, -30.0, 4200000.0 - 30 * r])
    a = arrays(tmp_path / "ds")
    assert a["images"].shape == (len(m["patches"]), 3, 16, 16) and a["labels"].dtype == np.uint8


def test_every_split_has_every_class_and_no_leak_with_overlap(tmp_path):
    scene(tmp_path, size=96)
    cfg = prep_config(tmp_path, overlap=0.5, split={"block_size": 32, "folds": 3})
    m = prepare(cfg, tmp_path / "ds").manifest
    for split in ("train", "val", "test"):
        assert all(n > 0 for n in m["class_counts"][split]), split
    assert check_dataset(tmp_path / "ds").problems == []
    # Overlapping windows exist, but only inside a block: never across splits.
    splits_by_block = {}
    for p in m["patches"]:
        splits_by_block.setdefault(p["block"], set()).add(p["split"])
    assert all(len(s) == 1 for s in splits_by_block.values())


def test_random_split_with_overlap_warns_of_leakage(tmp_path):
    scene(tmp_path, size=64)
    result = prepare(prep_config(tmp_path, overlap=0.5, split={"mode": "random", "folds": 2}), tmp_path / "ds")
    assert any("leakage" in w for w in result.warnings)
    assert check_dataset(tmp_path / "ds").problems == []  # reported as notes for random mode


def test_statistics_come_from_training_patches_only(tmp_path):
    scene(tmp_path, size=64)
    out = tmp_path / "ds"
    m = prepare(prep_config(tmp_path), out).manifest
    a = arrays(out)
    train = [i for i, p in enumerate(m["patches"]) if p["split"] == "train"]
    pixels = np.concatenate([a["images"][i][:, a["valid"][i].astype(bool)] for i in train], axis=1).astype(float)
    np.testing.assert_allclose(m["stats"]["train"]["mean"], pixels.mean(1), rtol=1e-9)
    np.testing.assert_allclose(m["stats"]["train"]["min"], pixels.min(1))
    everything = a["images"].reshape(len(a["images"]), 3, -1).transpose(1, 0, 2).reshape(3, -1).astype(float)
    assert not np.allclose(m["stats"]["train"]["mean"], everything.mean(1))
    fold0 = [i for i, p in enumerate(m["patches"]) if p["fold"] not in (-1, 0)]
    f_pixels = np.concatenate([a["images"][i].reshape(3, -1) for i in fold0], axis=1).astype(float)
    np.testing.assert_allclose(m["stats"]["fold_0"]["mean"], f_pixels.mean(1), rtol=1e-9)


def test_nodata_becomes_ignore_and_stays_out_of_statistics(tmp_path):
    img, _ = scene(tmp_path, size=32)
    import rasterio

    with rasterio.open(img) as src:
        data = src.read()
    data[:, :4, :] = 65535
    write_tif(img, data, nodata=65535)
    m = prepare(prep_config(tmp_path), tmp_path / "ds").manifest
    a = arrays(tmp_path / "ds")
    top = [i for i, p in enumerate(m["patches"]) if p["window"][0] == 0]
    assert all((a["labels"][i][:4] == 255).all() and not a["valid"][i][:4].any() for i in top)
    assert max(m["stats"]["train"]["max"]) < 65535


def remapped_scene(tmp_path, **extra):
    """A scene of 12 px squares of raw mask values 1, 10, 11 (classes 0, 1, 2) and 0 (ignored), whose two image
    bands hold 3x the raw value; -> its prep config."""
    labels = np.array([[1, 10], [11, 0]], np.uint8).repeat(12, 0).repeat(12, 1)
    write_tif(tmp_path / "img" / "s.tif", np.stack([labels.astype(np.uint16) * 3] * 2))
    write_tif(tmp_path / "msk" / "s.tif", labels)
    return prep_config(
        tmp_path,
        crop=8,
        classes=None,
        class_map={1: 0, 10: 1, 11: 2},
        ignore_values=[0],
        split={"block_size": 8, "folds": 2},
        **extra,
    )


def test_class_remapping_and_ignored_values(tmp_path):
    m = prepare(remapped_scene(tmp_path), tmp_path / "ds").manifest
    a = arrays(tmp_path / "ds")
    assert set(np.unique(a["labels"]).tolist()) <= {0, 1, 2, 255}
    total = np.sum([m["class_counts"][s] for s in ("train", "val", "test")], axis=0)
    assert total.sum() <= 3 * 144 and (total > 0).sum() >= 2


def test_unknown_values_are_an_error_naming_them(tmp_path):
    scene(tmp_path)
    cfg = prep_config(tmp_path, classes=None, class_map={0: 0, 1: 1})
    with pytest.raises(InputError, match=r"values the mapping cannot place: 2 \("):
        prepare(cfg, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_palette_colours_matching_nothing_are_listed(tmp_path):
    rgb = np.zeros((3, 16, 16), np.uint8)
    rgb[:, :8] = np.array([60, 16, 152])[:, None, None]  # #3C1098
    rgb[:, 8:] = np.array([1, 2, 3])[:, None, None]
    write_tif(tmp_path / "img" / "t.tif", rgb)
    write_tif(tmp_path / "msk" / "t.tif", rgb)
    cfg = prep_config(tmp_path, crop=8, classes=None, palette={"#3C1098": "building"}, split={"block_size": 8})
    report = check_sources(cfg)
    assert any("#010203: 128 px" in p for p in report.problems), report.problems
    with pytest.raises(InputError, match="#010203"):
        prepare(cfg, tmp_path / "ds")


def test_rerun_does_nothing_and_sources_are_untouched(tmp_path):
    img, msk = scene(tmp_path)
    before = sha256_file(img), sha256_file(msk)
    cfg = prep_config(tmp_path)
    first = prepare(cfg, tmp_path / "ds")
    stamp = (tmp_path / "ds" / "manifest.json").stat().st_mtime_ns
    second = prepare(cfg, tmp_path / "ds")
    assert not first.up_to_date and second.up_to_date
    assert (tmp_path / "ds" / "manifest.json").stat().st_mtime_ns == stamp
    assert (sha256_file(img), sha256_file(msk)) == before
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["input_hash"] == first.manifest["input_hash"]


def test_changed_settings_need_force(tmp_path):
    scene(tmp_path)
    prepare(prep_config(tmp_path), tmp_path / "ds")
    with pytest.raises(InputError, match="--force"):
        prepare(prep_config(tmp_path, normalize="minmax"), tmp_path / "ds")
    assert (
        prepare(prep_config(tmp_path, normalize="minmax"), tmp_path / "ds", force=True).manifest["normalize"]
        == "minmax"
    )


@pytest.mark.parametrize("case", ["missing", "no_mask", "sizes", "crs", "crop", "folds"])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, case):
    _img, msk = scene(tmp_path)
    kw = {}
    if case == "missing":
        kw["images"] = [str(tmp_path / "nope.tif")]
    elif case == "no_mask":
        scene(tmp_path, "b")
        (tmp_path / "msk" / "b.tif").unlink()
    elif case == "sizes":
        write_tif(msk, np.zeros((40, 48), np.uint8))
    elif case == "crs":
        write_tif(msk, np.zeros((48, 48), np.uint8), crs="EPSG:4326")
    elif case == "crop":
        kw["split"] = {"block_size": 64}
    elif case == "folds":
        kw["split"] = {"block_size": 32, "folds": 5}
    cfg = prep_config(tmp_path, crop=64 if case == "crop" else 16, **kw)
    expected = {
        "missing": "matches no file",
        "no_mask": "has no mask",
        "sizes": "matching mask",
        "crs": "different CRS",
        "crop": "smaller than data.crop_size",
        "folds": "folds",
    }[case]
    with pytest.raises(InputError, match=expected) as err:
        prepare(cfg, tmp_path / "ds")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds*"))


def test_ratios_must_sum_to_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        prep_config(tmp_path, split={"ratios": [0.5, 0.2, 0.2]})
    assert "sum to 1" in err.value.problems[0]


def test_cubes_from_npy_and_tifffile(tmp_path):
    labels = ((np.arange(32)[None] // 8 + np.arange(32)[:, None] // 8) % 3).astype(np.uint8)
    cube = np.random.default_rng(0).random((32, 32, 7)).astype(np.float32)  # (H, W, bands)
    (tmp_path / "img").mkdir()
    np.save(tmp_path / "img" / "c.npy", cube)
    import tifffile

    (tmp_path / "msk").mkdir()
    tifffile.imwrite(tmp_path / "msk" / "c.tif", labels)
    cfg = prep_config(
        tmp_path, images=[str(tmp_path / "img" / "c.npy")], masks=[str(tmp_path / "msk" / "c.tif")], reader="tifffile"
    )
    m = prepare(cfg, tmp_path / "ds").manifest
    assert m["bands"] == 7 and m["sources"][0]["image"]["crs"] is None
    first = next(i for i, p in enumerate(m["patches"]) if p["window"][:2] == [0, 0])
    np.testing.assert_allclose(np.load(tmp_path / "ds" / "images.npy")[first, :, 0, 0], cube[0, 0])


def test_class_map_sends_each_raw_value_to_its_class(tmp_path):
    """Raw 1 -> class 0, raw 10 -> class 1, raw 11 -> class 2, pixel by pixel (the image encodes the raw value)."""
    prepare(remapped_scene(tmp_path, normalize="minmax"), tmp_path / "ds")
    a = arrays(tmp_path / "ds")
    raw = a["images"][:, 0].astype(np.int64) // 3  # the raw mask value at every pixel of every patch
    expected = {1: 0, 10: 1, 11: 2}
    labelled = a["labels"] != 255
    assert labelled.sum() > 100
    for value, cls in expected.items():
        here = labelled & (raw == value)
        assert here.any() and (a["labels"][here] == cls).all(), value
    assert (a["labels"][raw == 0] == 255).all()


def test_a_block_smaller_than_the_crop_is_refused_by_prep_and_its_check(tmp_path):
    scene(tmp_path)
    cfg = prep_config(tmp_path, crop=16, split={"block_size": 8, "folds": 2})  # a config that loads
    with pytest.raises(ConfigError, match=r"prep.split.block_size: 8 is smaller than data.crop_size \(16\)"):
        prepare(cfg, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert any("block_size: 8 is smaller" in p for p in check_sources(cfg).problems)
    assert not any("block_size" in p for p in check_sources(prep_config(tmp_path, crop=16)).problems)


def test_fields_take_blocks_smaller_than_the_crop_size():
    # fields have their own size: a block under data.crop_size is a whole field per block, not an error
    cfg = build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"split": {"block_size": 16}}})
    assert cfg.prep.split.block_size == 16 < cfg.data.crop_size
