"""Every registered model: output shape and a gradient on every parameter (tiny variants)."""

from __future__ import annotations

import numpy as np
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
    if getattr(model, "gate", None) is not None:  # a zero-initialised gate passes no gradient to what it gates
        with torch.no_grad():
            model.gate.fill_(1.0)
    out = model(x)
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


def _ssmu(name="ssmu_net", **kw):
    return build_model(ModelConfig(name=name, **kw), 6, 3, tiny=True).eval()


SPECTRAL_MODELS = ["ssmu_net", "unet_spectral"]  # the models with the per-pixel linear path


def _spatial_head(model):
    return model.unet.head if hasattr(model, "unet") else model.head


@pytest.mark.parametrize("name", SPECTRAL_MODELS)
def test_ssmu_net_represents_a_logistic_regression_exactly(name):
    """With the spatial gate at 0, the model is the per-pixel linear classifier: given a fitted logistic
    regression's weights, its logits are the regression's decision function at every pixel."""
    from sklearn.linear_model import LogisticRegression

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 8, 8, generator=gen)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    labels = (pixels[:, 0] > 0).astype(int) + (pixels[:, 1] > 0.5).astype(int)  # 3 classes from the spectrum
    lr = LogisticRegression(max_iter=500).fit(pixels, labels)
    model = _ssmu(name)
    with torch.no_grad():
        model.spectral.weight.copy_(torch.tensor(lr.coef_, dtype=torch.float32)[:, :, None, None])
        model.spectral.bias.copy_(torch.tensor(lr.intercept_, dtype=torch.float32))
    logits = model(x).detach().permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(logits, lr.decision_function(pixels), rtol=1e-5, atol=1e-5)
    assert (logits.argmax(1) == lr.predict(pixels)).all()
    with torch.no_grad():
        model.gate.fill_(1.0)  # the spatial path adds to the linear logits through the gate
    assert not np.allclose(model(x).detach().permute(0, 2, 3, 1).reshape(-1, 3).numpy(), logits, atol=1e-3)


@pytest.mark.parametrize("name", SPECTRAL_MODELS)
def test_ssmu_net_linear_phase_trains_the_spectral_path_alone_then_both(name):
    model = _ssmu(name, linear_epochs=1).train()
    model.set_linear_phase(4)
    x = torch.randn(2, 6, 8, 8)
    for step in range(3):  # 2, 4 (linear phase over), 6 samples seen
        model.zero_grad()
        model(x).square().mean().backward()
        spatial = _spatial_head(model).weight.grad is not None and bool(model.gate.grad.abs().sum() > 0)
        assert spatial == (step == 2), step
        assert model.spectral.weight.grad is not None
    assert int(model.seen) == 6 and not model.linear_only()
    model.seen.zero_()
    assert model.eval().linear_only()  # a checkpoint of the linear phase evaluates as the linear classifier
    state = model.state_dict()
    assert int(state["linear_until"]) == 4 and "seen" in state  # saved, so a resumed run continues exactly


@pytest.mark.parametrize("name", SPECTRAL_MODELS)
def test_linear_epochs_needs_the_spectral_head(name):
    with pytest.raises(ConfigError, match="linear_epochs"):
        build_model(ModelConfig(name=name, spectral_head=False, linear_epochs=3), 3, 2)


def test_sinc_rms_sampled_at_a_few_bands_per_position():
    """With ``samples``, the RMS of each position is taken over that many evenly spaced bands of the filtered
    spectrum (the cost no longer grows with the band count); the signed means stay exact."""
    full, sampled = SincBandFilters(3, 5, positions=2), SincBandFilters(3, 5, positions=2, samples=3)
    x = torch.randn(2, 20, 3, 4)
    a, b = full(x), sampled(x)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # means: unchanged
    filtered = torch.einsum("fdc,bchw->bfdhw", full.band_matrix(20), x)  # (B, F, C, H, W)
    rows = torch.tensor([[0, 4, 9], [10, 14, 19]])
    expected = filtered[:, :, rows].square().mean(3).add(1e-6).sqrt().reshape(2, 6, 3, 4)
    torch.testing.assert_close(b[:, 6:], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bands", [7, 40])  # 40: the RMS sampled at a few bands; 7: at every band
def test_ssmu_net_folded_embedding_equals_the_concatenation(bands):
    """SSMU-Net folds the sinc bank's signed means into the embedding's weights on the raw bands and computes
    the RMS with its own backward: the same values and gradients as embed(cat([sinc(x), x]))."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="ssmu_net"), bands, 3, tiny=True)
    x = torch.randn(2, bands, 6, 5, requires_grad=True)
    target = torch.randn(2, model.embed[0].out_channels, 6, 5)
    got = model.embed_sinc(x)
    want = model.embed(torch.cat([model.sinc(x), x], dim=1))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    params = [x, *model.sinc.parameters(), *model.embed.parameters()]
    g_got = torch.autograd.grad((got * target).sum(), params)
    g_want = torch.autograd.grad((want * target).sum(), params)
    for a, b in zip(g_got, g_want, strict=True):
        # float32 sums in another order: 1.0e-5 apart when an earlier test left torch on other threads
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5)


def test_sinc_rms_backward_is_the_derivative():
    from ssmseg.models.layers.sinc import rms

    f = torch.randn(2, 3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rms, (f,))
    plain = f.detach().square().mean(2).add(1e-6).sqrt()
    torch.testing.assert_close(rms(f), plain)  # the custom function (training)
    with torch.no_grad():
        torch.testing.assert_close(rms(f), plain)  # the plain path (inference, export)
