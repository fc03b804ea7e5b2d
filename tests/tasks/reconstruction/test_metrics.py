"""Reconstruction metrics: PSNR/RMSE/SSIM on known cases, additive sums, calibration, power spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmseg.data.fields import sinusoid_fields
from ssmseg.tasks.reconstruction.metrics import (
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    metrics_from_sums,
    psnr,
    radial_power_spectrum,
    reconstruction_sums,
    rmse,
    sample_statistics,
    sample_sums,
    spectrum_error,
    ssim,
    ssim_map,
)


def smooth(b=4, size=32, seed=0):
    return torch.from_numpy(sinusoid_fields(b, size, seed=seed))


def test_psnr_and_rmse_known_values_by_region():
    target = torch.zeros(2, 1, 8, 8)
    observed = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    observed[:, :, :4] = True
    pred = target + 0.1
    pred[observed] = 0.5  # errors on observed pixels only count over the whole field
    assert torch.allclose(psnr(pred, target, 1.0, observed), torch.tensor([20.0, 20.0]), atol=1e-4)
    assert torch.allclose(rmse(pred, target, observed), torch.tensor([0.1, 0.1]))
    whole = (0.5 * 0.25 + 0.5 * 0.01) ** 0.5
    assert torch.allclose(rmse(pred, target, observed, unobserved=False), torch.tensor([whole, whole]))
    doubled = 20 + 20 * float(np.log10(2))  # MAX 2: +6 dB
    assert torch.allclose(psnr(pred, target, 2.0, observed), torch.tensor([doubled, doubled]), atol=1e-4)
    assert psnr(target, target, 1.0).tolist() == pytest.approx([100.0, 100.0])  # capped, never inf


def test_ssim_identical_constant_and_negated():
    x = smooth()
    assert torch.allclose(ssim(x, x, 1.0), torch.ones(4), atol=1e-5)
    a, b = 0.3, 0.7
    c1 = (SSIM_K1 * 1.0) ** 2
    s = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b), 1.0)
    assert s.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    assert (ssim(x, 1 - x, 1.0) < 0).all()  # anticorrelated structure


def test_ssim_map_matches_a_direct_window_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 24, 24, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(1, 1, 24, 24, generator=g, dtype=torch.float64)).clamp(0, 1)
    r = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * SSIM_SIGMA**2))
    w /= w.sum()
    i, j = 9, 13  # an interior pixel: its window lies inside the field
    px = x[0, 0, i - 5 : i + 6, j - 5 : j + 6].numpy()
    py = y[0, 0, i - 5 : i + 6, j - 5 : j + 6].numpy()
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
    cxy = (w * (px - mx) * (py - my)).sum()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim_map(x, y, 1.0)[0, 0, i, j].item() == pytest.approx(expected, rel=1e-9)


def test_ssim_region_is_the_unobserved_pixels():
    x = smooth(1)
    y = x.clone()
    observed = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    observed[..., :16] = True
    y[..., :8] = 1 - y[..., :8]  # damage far from the unobserved half (window radius 5)
    assert ssim(y, x, 1.0, observed).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(y, x, 1.0, observed, unobserved=False).item() < 0.9


def test_sums_are_additive_and_give_per_field_means():
    target = smooth(6)
    pred = target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    observed = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.1
    whole = reconstruction_sums(pred, target, observed, 1.0)
    halves = [reconstruction_sums(pred[s], target[s], observed[s], 1.0) for s in (slice(0, 2), slice(2, 6))]
    for key, value in whole.items():
        assert torch.allclose(value, halves[0][key] + halves[1][key]), key
    m = metrics_from_sums(whole)
    assert m["psnr"] == pytest.approx(psnr(pred, target, 1.0, observed).mean().item(), rel=1e-6)
    assert m["ssim_all"] == pytest.approx(ssim(pred, target, 1.0).mean().item(), rel=1e-6)
    assert m["rmse"] == pytest.approx(0.05, rel=0.05) and m["psnr"] == pytest.approx(26.0, abs=0.3)


def test_calibration_of_gaussian_samples():
    g = torch.Generator().manual_seed(0)
    k, shape = 200, (4, 1, 32, 32)
    mu, sigma = torch.rand(shape, generator=g), 0.1
    target = mu + sigma * torch.randn(shape, generator=g)
    observed = torch.rand(shape, generator=g) < 0.1
    calibrated = mu + sigma * torch.randn((k, *shape), generator=g)
    narrow = mu + sigma / 3 * torch.randn((k, *shape), generator=g)
    good = sample_statistics(calibrated, target, observed)
    bad = sample_statistics(narrow, target, observed)
    assert good["coverage"].mean().item() == pytest.approx(0.9, abs=0.02)
    assert bad["coverage"].mean().item() < 0.5  # about P(|z| < 1.645 / 3) = 0.42
    assert torch.allclose(good["mean"], mu, atol=0.05) and good["std"].mean().item() == pytest.approx(0.1, rel=0.05)
    m = metrics_from_sums({"fields": torch.tensor(4.0), **sample_sums(calibrated, target, observed)})
    assert m["coverage"] == pytest.approx(0.9, abs=0.02) and m["spread"] == pytest.approx(0.1, rel=0.05)
    one = sample_statistics(calibrated[:1], target, observed)
    assert (one["std"] == 0).all()


def test_power_spectrum_peak_and_noise_raises_high_frequency_error():
    rows = torch.arange(32.0)[:, None].expand(32, 32)
    wave = torch.sin(2 * torch.pi * 4 * rows / 32)  # 4 cycles down the field
    freqs, power = radial_power_spectrum(wave)
    assert freqs[0].item() == pytest.approx(1 / 32) and freqs[-1].item() == pytest.approx(0.5)
    assert freqs[power[0].argmax()].item() == pytest.approx(4 / 32)
    target = smooth(4, seed=2)
    noisy = target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))
    assert spectrum_error(target, target).abs().max().item() == 0
    high = spectrum_error(noisy, target, (0.25, 0.5))
    low = spectrum_error(noisy, target, (0.0, 0.1))
    assert (high > 10).all() and (low < 1).all()
    # PSNR barely sees it: 26 dB for noise whose high-frequency power is tens of times the truth's
    assert psnr(noisy, target, 1.0).mean().item() > 25


def test_spectrum_error_is_finite_for_a_constant_field():
    """A constant truth has no power off DC; the error must stay a finite number (history.json is JSON)."""
    flat = torch.full((2, 1, 16, 16), 3.0)
    wild = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 1e4
    for pred, target in ((wild, flat), (flat, wild), (flat, flat)):
        err = spectrum_error(pred, target)
        assert torch.isfinite(err).all() and (err <= 60.0 + 1e-6).all(), err
    assert spectrum_error(wild, flat).min() > 50
