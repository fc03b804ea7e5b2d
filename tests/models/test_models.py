"""Every registered model: output shape and a gradient on every parameter (tiny variants)."""

from __future__ import annotations

import pytest
import torch

from ssmseg.config.schema import ModelConfig
from ssmseg.errors import ConfigError
from ssmseg.models import build_model
from ssmseg.models.layers.sinc import SincBandFilters
from ssmseg.models.layers.wavelet import WaveletConv
from ssmseg.models.registry import model_names


@pytest.mark.parametrize("name", model_names("segmentation"))  # field models: tests/models/test_field_models.py
@pytest.mark.parametrize(("bands", "size"), [(5, 32), (3, 24)])
def test_forward_shape_and_gradients(name, bands, size):
    model = build_model(ModelConfig(name=name), bands, 4, tiny=True)
    x = torch.randn(2, bands, size, size)
    out = model(x)
    assert out.shape == (2, 4, size, size)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters without gradient signal: {zero}"


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid models: unet"):
        build_model(ModelConfig(name="segnet"), 3, 2)


def test_sinc_filters_start_tiling_the_spectrum():
    f = SincBandFilters(n_filters=4)
    low, high = f.cutoffs()
    assert torch.allclose(low, torch.tensor([0.0, 0.125, 0.25, 0.375]))
    assert torch.allclose(high, torch.tensor([0.135, 0.26, 0.385, 0.5]), atol=1e-6)


def test_haar_wavelet_conv_starts_as_identity_plus_depthwise():
    wc = WaveletConv(3, "haar")
    torch.nn.init.zeros_(wc.base.weight)
    torch.nn.init.zeros_(wc.base.bias)
    x = torch.randn(1, 3, 10, 14)
    torch.testing.assert_close(wc(x), x, atol=1e-5, rtol=1e-5)


def test_db2_wavelet_conv_reconstructs_the_interior():
    wc = WaveletConv(2, "db2")
    torch.nn.init.zeros_(wc.base.weight)
    torch.nn.init.zeros_(wc.base.bias)
    x = torch.randn(1, 2, 16, 16)
    torch.testing.assert_close(wc(x)[..., 4:-4, 4:-4], x[..., 4:-4, 4:-4], atol=1e-4, rtol=1e-4)


def test_sinc_bank_as_matrix_equals_per_pixel_filtering():
    import torch.nn.functional as F

    f = SincBandFilters(n_filters=3, kernel_size=5, positions=2)
    x = torch.randn(2, 9, 3, 4)
    spectra = x.permute(0, 2, 3, 1).reshape(-1, 1, 9)
    filtered = F.conv1d(spectra, f.kernels(), padding=2)  # (BHW, F, C)
    mean = F.adaptive_avg_pool1d(filtered, 2)
    rms = F.adaptive_avg_pool1d(filtered.square(), 2).add(1e-6).sqrt()
    expected = torch.cat([mean, rms], 1).reshape(2, 3, 4, -1).permute(0, 3, 1, 2)
    got = f(x)
    # The layer orders channels (mean of every filter and position, then rms); compare as sets per pixel.
    torch.testing.assert_close(got.sort(1).values, expected.sort(1).values, rtol=1e-5, atol=1e-5)
