"""Classical baselines: exact on constants, linear ones exact on a ramp, observed pixels untouched."""

from __future__ import annotations

import numpy as np
import pytest

from ssmseg.data.fields import observed_masks, sinusoid_fields
from ssmseg.errors import ConfigError, InputError
from ssmseg.tasks.reconstruction import baselines
from ssmseg.tasks.reconstruction.baselines import BASELINES, predict

H, W = 16, 20
MASK = observed_masks(1, H, W, 0.12, seed=0)[0]
CORNERS = MASK.copy()
CORNERS[[0, 0, -1, -1], [0, -1, 0, -1]] = True  # the convex hull is the whole grid


@pytest.mark.parametrize("name", BASELINES)
def test_constant_field_is_reproduced_exactly(name):
    values = np.stack([np.full((H, W), 3.25), np.full((H, W), -1.5)])
    out = predict(name, values, MASK)
    assert out.shape == (2, H, W) and np.allclose(out, values, rtol=0, atol=1e-9)


# linear and cubic are exact inside the convex hull only (outside it they copy the nearest value), hence the
# corners; the plane under the GP and the RBF's linear term make those two exact anywhere. nearest and mean
# are not linear-exact: they give steps and a flat field.
RAMP_TOLERANCE = {"linear": 1e-9, "cubic": 1e-6, "rbf": 1e-6, "gp": 1e-6}


@pytest.mark.parametrize("name", BASELINES)
def test_linear_ramp(name):
    rows, cols = np.mgrid[0:H, 0:W]
    ramp = 0.5 + 0.03 * rows - 0.02 * cols  # range about 0.83
    out = predict(name, ramp, CORNERS)
    err = np.abs(out - ramp).max()
    if name in RAMP_TOLERANCE:
        assert err < RAMP_TOLERANCE[name], err
    else:
        assert err > 0.02, err
    if name in ("rbf", "gp"):
        assert np.abs(predict(name, ramp, MASK) - ramp).max() < RAMP_TOLERANCE[name]


@pytest.mark.parametrize("name", BASELINES)
def test_observed_pixels_keep_their_values(name):
    field = np.random.default_rng(1).random((1, H, W)).astype(np.float32)
    out = predict(name, field, MASK)
    assert out.dtype == np.float64 and np.array_equal(out[:, MASK], field[:, MASK].astype(np.float64))
    assert np.isfinite(out).all()
    assert predict(name, field[0], MASK).shape == (H, W)


def test_smooth_field_ranks_interpolants_above_the_mean():
    field = sinusoid_fields(1, 24, max_cycles=2.0, seed=0)[0]
    mask = observed_masks(1, 24, 24, 0.15, seed=2)[0]

    def err(name):
        return float(np.sqrt(np.mean((predict(name, field, mask) - field)[:, ~mask] ** 2)))

    assert err("linear") < err("nearest") < err("mean")
    assert err("rbf") < err("linear") and err("gp") < err("linear")


def test_gp_fits_on_a_subset_then_uses_every_point(monkeypatch):
    monkeypatch.setattr(baselines, "GP_FIT_POINTS", 12)
    field = sinusoid_fields(1, 16, max_cycles=1.5, seed=1)[0]
    mask = observed_masks(1, 16, 16, 0.3, seed=0)[0]
    out = predict("gp", field, mask)
    assert np.sqrt(np.mean((out - field)[:, ~mask] ** 2)) < 0.1


def test_degenerate_inputs():
    field = np.random.default_rng(0).random((H, W))
    two = np.zeros((H, W), bool)
    two[3, 4] = two[10, 12] = True  # too few for a triangulation: nearest
    line = np.zeros((H, W), bool)
    line[5, ::3] = True  # collinear: nearest
    for name in BASELINES:
        for mask in (two, line):
            out = predict(name, field, mask)
            assert np.isfinite(out).all() and np.array_equal(out[mask], field[mask])
    with pytest.raises(ConfigError, match="mean, nearest, linear, cubic, rbf, gp"):
        predict("kriging", field, two)
    with pytest.raises(InputError, match="no observed pixel"):
        predict("linear", field, np.zeros((H, W), bool))
    with pytest.raises(InputError, match="must be"):
        predict("linear", field, two[:-1])
