"""The spectral head starts at the logistic regression `ssmseg baseline` fits: same decisions, any class set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssmseg.config.schema import ModelConfig
from ssmseg.models import build_model
from ssmseg.tasks.segmentation.spectral_init import fit_linear


@pytest.mark.parametrize("present", [[0, 1, 3], [1, 2], [2]])
def test_fit_linear_decides_as_the_baseline_pipeline(present):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 7)) * rng.uniform(0.1, 50, 7) + rng.normal(size=7) * 100  # raw, unscaled bands
    y = np.array(present)[np.digitize(x[:, 0], np.quantile(x[:, 0], np.linspace(0, 1, len(present) + 1)[1:-1]))]
    weight, bias = fit_linear(x, y, 4)
    model = build_model(ModelConfig(name="ssmu_net"), 7, 4, tiny=True).eval()
    with torch.no_grad():
        model.spectral.weight.copy_(torch.tensor(weight, dtype=torch.float32)[:, :, None, None])
        model.spectral.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        pred = model(torch.tensor(x.T[None, :, :, None], dtype=torch.float32)).argmax(1).ravel().numpy()
    if len(present) == 1:
        assert (pred == present[0]).all()
        return
    reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y).predict(x)
    assert (pred == reference).mean() > 0.99  # float32 logits of a float64 fit: ties at the margin may flip
    assert set(np.unique(pred)) <= set(present)  # a class absent from training is never predicted
