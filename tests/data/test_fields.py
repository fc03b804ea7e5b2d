"""Fields for reconstruction: synthetic sinusoids, reading files, observed masks, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmseg.data.fields import (
    FieldStats,
    denormalize,
    field_stats,
    normalize,
    observed_masks,
    observed_masks_torch,
    read_fields,
    read_stack,
    scale_to_unit,
    sinusoid_fields,
)
from ssmseg.errors import ConfigError, InputError
from tests.data.helpers import write_tif


def test_sinusoids_shape_range_and_determinism():
    a = sinusoid_fields(4, 32, channels=2, seed=3)
    assert a.shape == (4, 2, 32, 32) and a.dtype == np.float32
    assert np.allclose(a.min(axis=(1, 2, 3)), 0) and np.allclose(a.max(axis=(1, 2, 3)), 1)
    assert np.array_equal(a, sinusoid_fields(4, 32, channels=2, seed=3))
    assert np.array_equal(a[:2], sinusoid_fields(2, 32, channels=2, seed=3))  # field i depends on (seed, i)
    assert not np.array_equal(a, sinusoid_fields(4, 32, channels=2, seed=4))


def test_sinusoid_cycles_are_bounded():
    def rough(x):  # mean squared neighbour difference: grows with the square of the frequency
        return float(np.mean(np.diff(x, axis=-1) ** 2))

    smooth, wiggly = sinusoid_fields(20, 32, max_cycles=1.0), sinusoid_fields(20, 32, max_cycles=8.0)
    assert rough(smooth) * 10 < rough(wiggly)
    with pytest.raises(ConfigError, match="Nyquist"):
        sinusoid_fields(1, 32, max_cycles=17)


def test_observed_masks_counts_and_fixed_draws():
    m = observed_masks(6, 10, 12, 0.25, seed=1)
    assert m.shape == (6, 10, 12) and m.dtype == bool
    assert (m.sum(axis=(1, 2)) == 30).all()
    assert len({m[i].tobytes() for i in range(6)}) == 6  # different pixels per field
    # Field i's mask depends on (seed, i) only: the same in any batch split, in every run.
    assert np.array_equal(observed_masks(1, 10, 12, 0.25, seed=1, first_index=4)[0], m[4])
    assert np.array_equal(observed_masks(6, 10, 12, 0.25, seed=1), m)
    r = observed_masks(200, 10, 10, (0.05, 0.2), seed=0).sum(axis=(1, 2))
    assert r.min() >= 5 and r.max() <= 20 and len(set(r.tolist())) > 5


def test_observed_masks_extremes_keep_one_of_each():
    assert observed_masks(3, 4, 4, 0.001, seed=0).sum(axis=(1, 2)).tolist() == [1, 1, 1]
    assert observed_masks(3, 4, 4, 0.999, seed=0).sum(axis=(1, 2)).tolist() == [15, 15, 15]
    g = torch.Generator().manual_seed(0)
    assert observed_masks_torch(3, 4, 4, 0.001, g).sum(dim=(1, 2)).tolist() == [1, 1, 1]
    assert observed_masks_torch(3, 4, 4, 0.999, g).sum(dim=(1, 2)).tolist() == [15, 15, 15]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, (0.3, 0.2), (0.0, 0.5), (0.5, 1.0)])
def test_fraction_outside_open_interval_is_config_error(bad):
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        observed_masks(1, 8, 8, bad, seed=0)
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        observed_masks_torch(1, 8, 8, bad, torch.Generator())


def test_torch_masks_from_a_generator():
    def draw(seed):
        return observed_masks_torch(50, 16, 16, (0.05, 0.2), torch.Generator().manual_seed(seed))

    m = draw(0)
    assert m.dtype == torch.bool and m.shape == (50, 16, 16)
    counts = m.sum(dim=(1, 2))
    assert counts.min() >= round(0.05 * 256) and counts.max() <= round(0.2 * 256)
    assert torch.equal(m, draw(0)) and not torch.equal(m, draw(1))
    fixed = observed_masks_torch(4, 16, 16, 0.1, torch.Generator().manual_seed(0))
    assert fixed.sum(dim=(1, 2)).tolist() == [26] * 4


def test_read_images_as_bands_or_channels_tiles(tmp_path):
    image = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    path = write_tif(tmp_path / "a.tif", image)
    bands = read_fields([path], size=8, mode="bands")
    # 2 x 3 tiles per band, edge remainders dropped, row-major
    assert bands.shape == (3 * 6, 1, 8, 8) and bands.dtype == np.float32
    assert np.array_equal(bands[0, 0], image[0, :8, :8]) and np.array_equal(bands[1, 0], image[0, :8, 8:16])
    assert np.array_equal(bands[6, 0], image[1, :8, :8])
    chans = read_fields(path, size=8, mode="channels")
    assert chans.shape == (6, 3, 8, 8) and np.array_equal(chans[4], image[:, 8:16, 8:16])
    whole = read_fields(path, mode="channels")
    assert whole.shape == (1, 3, 20, 30)


def test_raster_nodata_tiles_are_dropped(tmp_path):
    image = np.full((1, 16, 16), 5, np.uint8)
    image[0, 0, 0] = 0
    path = write_tif(tmp_path / "n.tif", image, nodata=0)
    assert read_fields(path, size=8).shape == (3, 1, 8, 8)
    with pytest.raises(InputError, match="NaN"):
        read_fields(path, size=8, skip_nodata=False)


def test_stacks_and_their_errors(tmp_path):
    a = np.random.default_rng(0).random((5, 12, 12))
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", fields=np.zeros((2, 3, 12, 12)), other=np.ones(3))
    assert read_stack(tmp_path / "a.npy").shape == (5, 1, 12, 12)
    assert read_stack(tmp_path / "b.npz", key="fields").shape == (2, 3, 12, 12)
    with pytest.raises(InputError, match="name one with key"):
        read_stack(tmp_path / "b.npz")
    np.save(tmp_path / "c.npy", np.zeros((4, 10, 10)))
    with pytest.raises(InputError, match="different shapes"):
        read_fields([tmp_path / "a.npy", tmp_path / "c.npy"])
    assert read_fields([tmp_path / "a.npy", tmp_path / "c.npy"], size=5).shape == (5 * 4 + 4 * 4, 1, 5, 5)
    a[2, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(InputError, match=r"field 2 .* NaN"):
        read_fields(tmp_path / "nan.npy")


def test_scale_to_unit_rejects_constant_fields():
    fields = np.stack([np.full((1, 4, 4), 3.0), np.arange(16.0).reshape(1, 4, 4)]).astype(np.float32)
    with pytest.raises(InputError, match=r"field 0 is constant.*drop_constant"):
        scale_to_unit(fields)
    scaled, kept = scale_to_unit(fields, drop_constant=True)
    assert kept.tolist() == [1] and scaled.min() == 0 and scaled.max() == 1


def test_stats_normalise_roundtrip_numpy_and_torch():
    rng = np.random.default_rng(0)
    train = (rng.normal(size=(10, 2, 8, 8)) * [[[[2.0]], [[5.0]]]] + [[[[1.0]], [[-3.0]]]]).astype(np.float32)
    s = field_stats(train)
    assert s.pixels == 640 and s.data_range == pytest.approx(train.max() - train.min())
    z = normalize(train, s)
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5) and np.allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)
    assert np.allclose(denormalize(z, s), train, atol=1e-5)
    t = torch.from_numpy(train)
    assert torch.allclose(denormalize(normalize(t, s), s), t, atol=1e-5)
    assert FieldStats.from_dict(s.to_dict()) == s
    with pytest.raises(InputError, match="constant"):
        field_stats(np.ones((2, 1, 4, 4), np.float32))


def test_real_grayscale_images_cut_into_fields(shared_data):
    root = shared_data / "fields" / "skimage"
    fields = read_fields([root / "camera.png", root / "moon.png"], size=64)
    assert fields.shape == (2 * 64, 1, 64, 64)
    scaled, kept = scale_to_unit(fields, drop_constant=True)
    assert len(kept) > 100 and scaled.min() == 0 and scaled.max() == 1
    with pytest.raises(InputError, match="different shapes"):  # RGB and grayscale as channels
        read_fields([root / "camera.png", root / "astronaut.png"], size=64, mode="channels")


def test_gray_mode_is_the_luminance_of_rgb_and_keeps_one_band(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 16, 24)).astype(np.uint8)
    gray = read_fields([write_tif(tmp_path / "rgb.tif", rgb)], size=8, mode="gray")
    assert gray.shape == (6, 1, 8, 8)  # one field per tile, not three
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    np.testing.assert_allclose(gray[1, 0], luma[:8, 8:16], rtol=1e-5)
    one = rng.integers(0, 256, (1, 16, 16)).astype(np.uint8)
    assert np.array_equal(read_fields([write_tif(tmp_path / "one.tif", one)], mode="gray")[0, 0], one[0])
    with pytest.raises(InputError, match="gray fields need one band or R, G, B"):
        read_fields([write_tif(tmp_path / "two.tif", rgb[:2])], mode="gray")
    with pytest.raises(ConfigError, match="'gray'"):
        read_fields([tmp_path / "rgb.tif"], mode="grey")
