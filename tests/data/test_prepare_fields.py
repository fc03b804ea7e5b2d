"""Field datasets: sinusoids and files to a dataset folder with leak-free splits, training-only statistics,
fixed validation draws, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmseg.config import build_config
from ssmseg.data.field_dataset import FieldDataset
from ssmseg.data.prepare_fields import prepare_fields
from ssmseg.errors import ConfigError, InputError
from tests.data.helpers import write_tif


def cfg(**prep):
    return build_config(explicit={"task": {"name": "reconstruction"}, "prep": prep})


def test_sinusoids_split_and_train_only_statistics(tmp_path):
    r = prepare_fields(cfg(fields={"count": 40, "size": 16}), tmp_path / "ds", synthetic=True)
    m = r.manifest
    assert (m["task"], m["count"], m["size"], m["channels"]) == ("reconstruction", 40, [16, 16], 1)
    assert sum(m["counts"].values()) == 40 and min(m["counts"].values()) >= 1
    fields = np.load(tmp_path / "ds" / "fields.npy")
    train = fields[[f["split"] == "train" for f in m["fields"]]]
    assert m["stats"]["train"]["mean"][0] == pytest.approx(float(train.mean()), rel=1e-6)
    assert m["stats"]["train"]["mean"][0] != pytest.approx(float(fields.mean()), rel=1e-9)
    again = prepare_fields(cfg(fields={"count": 40, "size": 16}), tmp_path / "ds", synthetic=True)
    assert again.up_to_date


def test_tiles_of_one_location_never_straddle_splits(tmp_path):
    rng = np.random.default_rng(0)
    write_tif(tmp_path / "a.tif", rng.random((3, 64, 64)).astype(np.float32))
    r = prepare_fields(
        cfg(images=[str(tmp_path / "a.tif")], fields={"size": 8}, split={"block_size": 16}), tmp_path / "ds"
    )
    m = r.manifest
    assert m["count"] == 3 * 64 and m["channels"] == 1  # one field per band and tile
    # The three bands of a tile are the same pixels: they share a split.
    by_tile: dict[int, set[str]] = {}
    for f in m["fields"]:
        by_tile.setdefault(f["index"] % 64, set()).add(f["split"])
    assert all(len(s) == 1 for s in by_tile.values())


def test_stacks_and_channels(tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).random((30, 2, 12, 12)).astype(np.float32))
    m = prepare_fields(cfg(images=[str(tmp_path / "s.npy")], split={"mode": "random"}), tmp_path / "ds").manifest
    assert (m["count"], m["channels"], m["size"]) == (30, 2, [12, 12])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("sizes", "different shapes"),
        ("nan", "NaN"),
        ("constant", "constant"),
        ("few", "at least 3"),
    ],
)
def test_bad_fields_are_one_line_and_write_nothing(tmp_path, setup, message):
    rng = np.random.default_rng(0)
    paths = [tmp_path / "a.npy"]
    if setup == "sizes":
        np.save(paths[0], rng.random((10, 8, 8)))
        paths.append(tmp_path / "b.npy")
        np.save(paths[1], rng.random((10, 9, 9)))
    elif setup == "nan":
        a = rng.random((10, 8, 8))
        a[3, 2, 2] = np.nan
        np.save(paths[0], a)
    elif setup == "constant":
        np.save(paths[0], np.ones((10, 8, 8)))
    else:
        np.save(paths[0], rng.random((2, 8, 8)))
    with pytest.raises(InputError, match=message):
        prepare_fields(cfg(images=[str(p) for p in paths], split={"mode": "random"}), tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".*partial*"))


def test_observed_fraction_outside_0_1_is_a_config_error():
    for value, message in (
        (0.0, "strictly between 0 and 1"),
        (1.5, "strictly between 0 and 1"),
        ([0.2, 0.05], "reversed"),
    ):
        with pytest.raises(ConfigError) as err:
            build_config(explicit={"reconstruction": {"observed": value}})
        assert len(err.value.problems) == 1 and message in err.value.problems[0]


def test_validation_draws_are_fixed_and_datasets_refuse_the_other_task(tmp_path, synthetic_dataset):
    prepare_fields(cfg(fields={"count": 30, "size": 16}), tmp_path / "ds", synthetic=True)
    a = FieldDataset(tmp_path / "ds", "val", fraction=(0.05, 0.2), seed=3)
    b = FieldDataset(tmp_path / "ds", "val", fraction=(0.05, 0.2), seed=3)
    for i in range(len(a)):
        assert all(torch.equal(a[i][k], b[i][k]) for k in ("observed", "noise", "t"))
    fractions = {round(float(a[i]["observed"].float().mean()), 3) for i in range(len(a))}
    assert len(fractions) > 1 and all(0.04 <= f <= 0.21 for f in fractions)
    with pytest.raises(InputError, match="segmentation dataset"):
        FieldDataset(synthetic_dataset, "train")
    from ssmseg.data.datasets import PatchDataset

    with pytest.raises(InputError, match=r"field \(reconstruction\) dataset"):
        PatchDataset(tmp_path / "ds", "train")


def test_tiles_touching_nodata_are_counted_and_an_all_nodata_raster_is_named(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((1, 32, 32)).astype(np.float32)
    image[:, :8, :] = -9999.0  # one row of 8-px tiles touches nodata
    write_tif(tmp_path / "a.tif", image, nodata=-9999.0)
    r = prepare_fields(
        cfg(images=[str(tmp_path / "a.tif")], fields={"size": 8}, split={"mode": "random"}), tmp_path / "ds"
    )
    assert r.manifest["count"] == 12
    assert any("4 of 16 tiles" in w and "a.tif" in w and "nodata" in w for w in r.warnings), r.warnings
    write_tif(tmp_path / "nan.tif", np.full((1, 32, 32), np.nan, np.float32))
    with pytest.raises(InputError, match=r"nan\.tif.*all 16 tiles.*nodata or NaN"):
        prepare_fields(cfg(images=[str(tmp_path / "nan.tif")], fields={"size": 8}), tmp_path / "ds2")
    with pytest.raises(InputError, match=r"nan\.tif.*nodata or NaN pixels"):
        prepare_fields(cfg(images=[str(tmp_path / "nan.tif")]), tmp_path / "ds3")
    assert not (tmp_path / "ds2").exists() and not (tmp_path / "ds3").exists()


def test_fields_real_reads_its_images_from_the_folder_prep_runs_in(tmp_path, monkeypatch):
    """The preset names its files relative to the Dubai download (tile_N/images/*.jpg): prep run there finds them;
    run anywhere else it fails in one line that says what to set."""
    from PIL import Image

    dubai = tmp_path / "dubai"
    rng = np.random.default_rng(0)
    for tile in (1, 2, 5):
        (dubai / f"tile_{tile}" / "images").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(
            dubai / f"tile_{tile}" / "images" / "a.jpg"
        )
    preset = build_config("fields_real", overrides=["prep.split.mode=random"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"prep.images: 'tile_\[1-4\]/images/\*.jpg' matches no file under .*set prep"):
        prepare_fields(preset, tmp_path / "out")
    monkeypatch.chdir(dubai)
    m = prepare_fields(preset, tmp_path / "out").manifest
    assert m["count"] == 2 * 2 * 3 and m["channels"] == 1  # tiles 1 and 2 only, 32 x 32 grayscale


def test_fields_from_the_bands_of_a_mat_cube_whose_band_axis_is_set(tmp_path):
    """A (rows, cols, bands) .mat cube whose shape does not tell its band axis: prep.band_axis says it."""
    from scipy.io import savemat

    cube = np.random.default_rng(0).normal(size=(16, 17, 5)).astype(np.float32)
    savemat(tmp_path / "cube.mat", {"cube": cube})
    bands = {
        "images": [str(tmp_path / "cube.mat")],
        "fields": {"size": 8, "mode": "bands"},
        "split": {"mode": "random"},
    }
    with pytest.raises(InputError, match="band_axis"):
        prepare_fields(cfg(**bands), tmp_path / "no")
    r = prepare_fields(cfg(**bands, band_axis=2), tmp_path / "ds")
    assert r.manifest["count"] == 5 * 2 * 2  # one field per band and 8 x 8 tile
    fields = np.load(tmp_path / "ds" / "fields.npy")
    np.testing.assert_allclose(
        sorted(fields[:, 0, 0, 0]),
        sorted(cube[0, 0, :].tolist() + cube[0, 8, :].tolist() + cube[8, 0, :].tolist() + cube[8, 8, :].tolist()),
        rtol=1e-6,
    )
