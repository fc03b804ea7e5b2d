"""model.spectral_context: SSMU-Net's linear head on [bands, k x k mean of the bands], fitted on the same
features as the model computes them, so the model starts exactly at that logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from ssmseg.config.schema import ModelConfig
from ssmseg.errors import ConfigError
from ssmseg.models import build_model
from ssmseg.models.layers.context import box_mean, spectral_features


def _box_mean_loops(x: np.ndarray, k: int) -> np.ndarray:
    """(C, H, W) -> (C, H, W): the mean over the k x k window's pixels inside the image, by plain loops."""
    h, w = x.shape[1:]
    r, out = k // 2, np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            out[:, i, j] = x[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean((1, 2))
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_box_mean_is_the_count_normalised_window_mean(k):
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    got = box_mean(x, k)
    assert got.shape == x.shape
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), _box_mean_loops(x[b].numpy(), k), rtol=1e-5, atol=1e-6)
    # the augmentations (flips, 90-degree rotations) commute with it: no padding value enters at the borders
    torch.testing.assert_close(box_mean(x.flip(-1), k), got.flip(-1))
    torch.testing.assert_close(box_mean(x.rot90(1, (-2, -1)), k), got.rot90(1, (-2, -1)))


def test_spectral_features_shapes():
    x = torch.randn(2, 4, 5, 6)
    assert spectral_features(x, 0) is x
    f = spectral_features(x, 3)
    assert f.shape == (2, 8, 5, 6)
    torch.testing.assert_close(f[:, :4], x)


def test_ssmu_net_with_context_is_the_logistic_regression_on_those_features():
    """Gate at 0: the logits are the decision function of a regression on [pixel, 3x3 mean] at every pixel."""
    from sklearn.linear_model import LogisticRegression

    x = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    feats = np.concatenate([x.numpy(), np.stack([_box_mean_loops(b, 3) for b in x.numpy()])], 1)
    pixels = feats.transpose(0, 2, 3, 1).reshape(-1, 12)
    labels = (pixels[:, 6] > 0).astype(int) + (pixels[:, 0] > 0.5).astype(int)  # depends on the mean too
    lr = LogisticRegression(max_iter=500).fit(pixels, labels)
    model = build_model(ModelConfig(name="ssmu_net", spectral_context=3), 6, 3, tiny=True).eval()
    assert model.spectral.in_channels == 12
    with torch.no_grad():
        model.spectral.weight.copy_(torch.tensor(lr.coef_, dtype=torch.float32)[:, :, None, None])
        model.spectral.bias.copy_(torch.tensor(lr.intercept_, dtype=torch.float32))
    logits = model(x).detach().permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(logits, lr.decision_function(pixels), rtol=1e-4, atol=1e-4)


def test_the_task_fits_the_head_on_the_models_own_features(synthetic_dataset):
    """spectral_init: fit with spectral_context 3: the head is the regression on training_pixels' features, those
    features are the patch's pixels and their 3x3 means, and at epoch 0 the model predicts as that regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ssmseg.config import build_config
    from ssmseg.tasks.segmentation.inference import owned_mask
    from ssmseg.tasks.segmentation.spectral_init import fit_linear, training_pixels
    from ssmseg.tasks.segmentation.task import SegmentationTask

    cfg = build_config(preset="fast", explicit={"model": {"spectral_context": 3, "linear_epochs": 1}})
    task = SegmentationTask(cfg, synthetic_dataset)
    ds = task.train_set
    ds.indices = ds.indices[:8]  # a few patches keep the fits small
    model = task.build_model().eval()
    x, y = training_pixels(ds, max_pixels=10**9, seed=cfg.runtime.seed, context=3)
    # the features: every labelled training pixel's bands and 3x3 means, as the loops compute them, in the
    # seeded patch order training_pixels reads them (all pixels kept: no draw)
    expected = []
    for i in np.random.default_rng(cfg.runtime.seed).permutation(len(ds)):
        item = ds[int(i)]
        img, mask = item["image"].numpy(), item["mask"].numpy()
        f = np.concatenate([img, _box_mean_loops(img, 3)])
        own = owned_mask(ds.manifest["patches"][ds.indices[int(i)]], mask.shape)
        expected.append(f[:, (mask != ds.ignore_index) & own].T)
    expected = np.concatenate(expected)
    assert x.shape == expected.shape and x.shape[1] == 2 * ds.bands
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    with threadpool_limits(limits=1, user_api="blas"):  # as the task fits it (an unconverged fit moves with BLAS)
        weight, bias = fit_linear(*training_pixels(ds, seed=cfg.runtime.seed, context=3), task.num_classes)
    np.testing.assert_allclose(model.spectral.weight[:, :, 0, 0].detach().numpy(), weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.spectral.bias.detach().numpy(), bias, rtol=1e-4, atol=1e-4)
    # epoch 0: the model (in its linear phase) decides as the baseline's pipeline fitted on the same features
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
    batch = torch.stack([ds[i]["image"] for i in range(len(ds))])
    masks = torch.stack([ds[i]["mask"] for i in range(len(ds))]).numpy()
    with torch.no_grad():
        pred = model(batch).argmax(1).numpy()
    keep = masks != ds.ignore_index
    feats = spectral_features(batch, 3).numpy().transpose(0, 2, 3, 1)[keep]
    assert (pred[keep] == reference.predict(feats)).mean() > 0.99


def test_an_old_checkpoint_without_the_key_loads_as_before():
    """A checkpoint written before spectral_context existed (no key in its model settings) loads unchanged."""
    from ssmseg.tasks.segmentation.evaluate import load_model

    old = build_model(ModelConfig(name="ssmu_net"), 5, 3)
    settings = ModelConfig(name="ssmu_net").model_dump(mode="json")
    del settings["spectral_context"]
    state = {"config": {"model": settings}, "in_channels": 5, "num_classes": 3, "model": old.state_dict()}
    model = load_model(state, torch.device("cpu"))
    assert model.spectral.in_channels == 5 and model.spectral_context == 0
    x = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(model(x), old.eval()(x))


def test_spectral_context_settings_are_checked():
    with pytest.raises(ValidationError):
        ModelConfig(name="ssmu_net", spectral_context=4)
    with pytest.raises(ConfigError, match="spectral_context"):
        build_model(ModelConfig(name="ssmu_net", spectral_head=False, spectral_context=3), 3, 2)
    with pytest.raises(ConfigError, match="spectral_context"):
        build_model(ModelConfig(name="unet", spectral_context=3), 3, 2)
