"""Start a model's per-pixel linear path at the logistic regression of the training pixels.

The spectral head of SSMU-Net (``model.spectral_head``) is a 1x1 convolution of the normalised bands, i.e. a
per-pixel linear classifier. ``model.spectral_init: fit`` sets it to the multinomial logistic regression that
``ssmseg baseline`` fits (standardised spectrum, L2, lbfgs), on a sample of the training part's labelled
pixels only, so the model starts at the classical floor and training moves on from there. With
``model.spectral_context: k`` the head reads [bands, k x k mean of the bands] and the regression is fitted on
exactly those features, computed per patch by the same function as the model's.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ssmseg.data.datasets import PatchDataset
from ssmseg.models.layers.context import spectral_features
from ssmseg.tasks.segmentation.inference import owned_mask

MAX_PIXELS = 50_000  # labelled training pixels drawn for the fit


def training_pixels(
    ds: PatchDataset, max_pixels: int = MAX_PIXELS, seed: int = 0, context: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) features (F = bands: the normalised spectra; with ``context`` k > 0, F = 2 bands: the spectra
    and their k x k means over the patch, as the model's head reads them) and (N,) labels of labelled training
    pixels, at most ``max_pixels`` drawn at random (patches read in a seeded order until enough are found).
    Each pixel counts once, in the patch that owns it, as ``ssmseg baseline`` fits its logistic regression:
    overlapping patches would otherwise weight the pixels near patch centres twice."""
    rng = np.random.default_rng(seed)
    patches = ds.manifest["patches"]
    xs, ys, total = [], [], 0
    for i in rng.permutation(len(ds)):
        item = ds[int(i)]
        image, mask = spectral_features(item["image"][None], context)[0].numpy(), item["mask"].numpy()
        keep = (mask != ds.ignore_index) & owned_mask(patches[ds.indices[int(i)]], mask.shape)
        xs.append(image[:, keep].T)
        ys.append(mask[keep])
        total += int(keep.sum())
        if total >= 4 * max_pixels:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > max_pixels:
        pick = rng.choice(len(y), max_pixels, replace=False)
        x, y = x[pick], y[pick]
    return x.astype(np.float64), y.astype(np.int64)


def fit_linear(x: np.ndarray, y: np.ndarray, num_classes: int, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression of labels y (N,) on spectra x (N, C) -> (weight (K, C), bias (K,)) of a linear
    classifier of the raw x whose softmax is the regression's; classes absent from y get a bias of -30."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    weight, bias = np.zeros((num_classes, x.shape[1])), np.full(num_classes, -30.0)
    present = np.unique(y)
    if len(present) == 1:
        bias[present[0]] = 0.0
        return weight, bias
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(max_iter=max_iter).fit((x - mean) / std, y)
    coef, intercept = lr.coef_, lr.intercept_
    if len(present) == 2:  # sklearn's binary form: one row for the second class; split it symmetrically
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    w = coef / std  # fold the standardisation into the weights
    weight[present] = w
    bias[present] = intercept - w @ mean
    return weight, bias


def init_spectral_head(
    head: nn.Conv2d, ds: PatchDataset, seed: int = 0, context: int = 0, threads: int | None = None
) -> None:
    """Set a (features -> classes) 1x1 convolution to the logistic regression of ``ds``'s labelled pixels on
    ``spectral_features(patch, context)`` (the bands, or with ``context`` k the bands and their k x k means).
    ``threads``: BLAS threads of the fit (None: 1), as ``ssmseg baseline`` fits it."""
    from threadpoolctl import threadpool_limits

    x, y = training_pixels(ds, seed=seed, context=context)
    # BLAS's thread count changes the fit's rounding (measured: 5e-14 in the weights between 1 and 2 threads),
    # and a run is only repeatable if the fit is: runtime.threads pins it, as it pins torch.
    with threadpool_limits(limits=threads or 1, user_api="blas"):
        weight, bias = fit_linear(x, y, head.out_channels)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype)[:, :, None, None])
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
