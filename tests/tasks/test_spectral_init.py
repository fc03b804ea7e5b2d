"""The spectral head starts at the logistic regression `ssmseg baseline` fits: same decisions, any class set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

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


@pytest.mark.parametrize("train_head", [True, False])
def test_the_task_starts_the_head_at_the_training_pixels_regression(synthetic_dataset, train_head):
    """build_model fits the head on the training part only, freezes it when asked, and sets the linear phase
    from the epoch length."""
    from ssmseg.config import build_config
    from ssmseg.tasks.segmentation.spectral_init import training_pixels
    from ssmseg.tasks.segmentation.task import SegmentationTask

    cfg = build_config(preset="fast", explicit={"model": {"spectral_train": train_head, "linear_epochs": 2}})
    task = SegmentationTask(cfg, synthetic_dataset)
    model = task.build_model()
    x, y = training_pixels(task.train_set)
    with threadpool_limits(limits=1, user_api="blas"):  # as the task fits it (an unconverged fit moves with BLAS)
        weight, bias = fit_linear(x, y, task.num_classes)
    np.testing.assert_allclose(model.spectral.weight[:, :, 0, 0].detach().numpy(), weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.spectral.bias.detach().numpy(), bias, rtol=1e-4, atol=1e-4)
    assert model.spectral.weight.requires_grad == train_head and model.gate.requires_grad
    assert int(model.linear_until) == 2 * task.samples_per_epoch() > 0


def test_training_pixels_count_each_pixel_once(synthetic_dataset):
    """Pixels of overlapping training patches count once (in the patch that owns them), as in the baseline."""
    from ssmseg.data.datasets import PatchDataset
    from ssmseg.tasks.segmentation.spectral_init import training_pixels

    ds = PatchDataset(synthetic_dataset, "train")
    for i in ds.indices:  # as if each window overlapped the next by half: it owns its top-left quarter
        ds.manifest["patches"][i]["own"] = [8, 8]
    owned = sum(int((ds.labels(i)[:8, :8] != ds.ignore_index).sum()) for i in range(len(ds)))
    _, y = training_pixels(ds, max_pixels=10**9)
    assert len(y) == owned


@pytest.mark.parametrize(("threads", "blas"), [(None, 1), ("auto", 1), (2, 2)])
def test_the_fit_runs_on_runtime_threads_blas_threads(synthetic_dataset, monkeypatch, threads, blas):
    """BLAS's thread count changes the fit's rounding, so the fit is pinned as `ssmseg baseline` pins it:
    runtime.threads when given as a number, else one thread (never the library's all-cores default)."""
    from threadpoolctl import threadpool_info

    from ssmseg.config import build_config
    from ssmseg.tasks.segmentation import spectral_init
    from ssmseg.tasks.segmentation.task import SegmentationTask

    seen = []

    def spy(x, y, k, max_iter=300):
        seen.append({i["internal_api"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return fit_linear(x, y, k, max_iter)

    monkeypatch.setattr(spectral_init, "fit_linear", spy)
    cfg = build_config(preset="fast", explicit={"runtime": {"threads": threads}})
    SegmentationTask(cfg, synthetic_dataset).build_model()
    assert seen and all(set(n.values()) == {blas} for n in seen), seen
