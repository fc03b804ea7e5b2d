"""The field models' floor: per-field units from the observations alone, normalised convolution, bounds, and a
FieldUNet that starts at the interpolant, ignores the data's units and never leaves its bounds."""

from __future__ import annotations

import pytest
import torch

from ssmseg.models.field_inputs import field_frame, normalized_convolution, observation_spacing, observed_bounds
from ssmseg.models.field_unet import FieldUNet


def fields(b=3, h=16, w=16, frac=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, 1, h, w, generator=g) < frac).float()
    mask[:, :, 0, 0] = 1.0
    values = torch.randn(b, 1, h, w, generator=g).cumsum(-1).cumsum(-2) * 0.1
    return values, mask


def test_frame_is_the_observed_mean_and_std_only():
    values, mask = fields()
    loc, scale = field_frame(values * mask + 1000 * (1 - mask), mask)  # unobserved pixels never read
    for i in range(len(values)):
        seen = values[i, 0][mask[i, 0] > 0]
        torch.testing.assert_close(loc[i, 0, 0, 0], seen.mean())
        torch.testing.assert_close(scale[i, 0, 0, 0], seen.std(unbiased=False))
    none_loc, none_scale = field_frame(values, torch.zeros_like(mask))
    assert (none_loc == 0).all() and (none_scale == 1).all()
    _, const = field_frame(torch.full_like(values, 7.0), mask)
    assert (const > 0).all() and (const < 0.1).all()


def test_normalized_convolution_reproduces_a_constant_and_interpolates_between_observations():
    values, mask = fields()
    nc, certainty = normalized_convolution(torch.full_like(values, 2.5), mask, (0.5, 1.0, 2.0))
    assert nc.shape == (3, 3, 16, 16) and certainty.shape == (3, 3, 16, 16)
    torch.testing.assert_close(nc, torch.full_like(nc, 2.5))
    nc, _ = normalized_convolution(values, mask, (1.0,))
    lo = torch.where(mask > 0, values, torch.inf).amin((2, 3), keepdim=True)
    hi = torch.where(mask > 0, values, -torch.inf).amax((2, 3), keepdim=True)
    assert ((nc >= lo - 1e-5) & (nc <= hi + 1e-5)).all()  # a weighted mean of the observations
    torch.testing.assert_close(observation_spacing(torch.ones(1, 1, 4, 4)), torch.ones(1))


def test_bounds_are_the_observed_range_with_a_margin():
    values, mask = fields()
    lo, hi = observed_bounds(values, mask, 0.25)
    seen = values[0, 0][mask[0, 0] > 0]
    span = seen.max() - seen.min()
    torch.testing.assert_close(lo[0, 0, 0, 0], seen.min() - 0.25 * max(span, 1.0))
    torch.testing.assert_close(hi[0, 0, 0, 0], seen.max() + 0.25 * max(span, 1.0))


def unet(**kw):
    return FieldUNet(**{"width": 8, "depth": 2, "d_state": 4, "time_dim": 16, **kw}).eval()


def test_an_untrained_unet_is_the_middle_interpolant_in_data_units():
    values, mask = fields()
    model = unet()
    torch.nn.init.zeros_(model.head.weight)
    with torch.no_grad():
        clean = model(torch.randn_like(values), torch.zeros(3), values * mask, mask, return_clean=True)
    loc, scale = field_frame(values * mask, mask)
    nc, _ = normalized_convolution((values - loc) / scale * mask, mask, (1.0,))
    torch.testing.assert_close(clean, loc + scale * nc, atol=1e-4, rtol=1e-4)


def test_units_do_not_matter():
    """a * data + b in gives a * answer + b out (at t = 0, where x_t is noise in either units)."""
    values, mask = fields()
    model = unet()
    torch.nn.init.normal_(model.head.weight)
    x0, t = torch.randn_like(values), torch.zeros(3)
    with torch.no_grad():
        ref = model(x0, t, values * mask, mask, return_clean=True)
        moved = model(x0, t, (values * 5437.0 + 300.0) * mask, mask, return_clean=True)
    torch.testing.assert_close(moved, ref * 5437.0 + 300.0, rtol=1e-3, atol=0.05)


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_outputs_stay_inside_the_observed_range_and_the_velocity_lands_on_them(margin):
    values, mask = fields()
    model = unet(bound_margin=margin)
    torch.nn.init.normal_(model.head.weight, std=100.0)  # a wild network
    x_t, t = torch.randn_like(values), torch.rand(3)
    with torch.no_grad():
        clean = model(x_t, t, values * mask, mask, return_clean=True)
        v = model(x_t, t, values * mask, mask)
    lo, hi = observed_bounds(values, mask, margin)
    assert ((clean >= lo - 1e-4) & (clean <= hi + 1e-4)).all()
    assert (clean <= lo + 1e-4).any() or (clean >= hi - 1e-4).any()  # the bound acted
    torch.testing.assert_close(x_t + (1 - t.reshape(-1, 1, 1, 1)) * v, clean, atol=1e-4, rtol=1e-4)
    free = unet(bound_margin=None)
    free.load_state_dict(model.state_dict())
    with torch.no_grad():
        unbounded = free(x_t, t, values * mask, mask, return_clean=True)
    assert ((unbounded < lo - 1e-3) | (unbounded > hi + 1e-3)).any()
