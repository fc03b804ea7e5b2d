"""Local mean spectra: the spectral-spatial features of SSMU-Net's linear path (``model.spectral_context``).

A field in a hyperspectral scene is homogeneous, so the mean spectrum of a pixel's k x k neighbourhood is a
less noisy view of its class than the pixel alone. The same function builds the features the model's head
reads and the ones its logistic-regression start (``model.spectral_init: fit``) is fitted on, so the two agree
exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): the mean of each channel over the k x k window centred on each pixel (k
    odd), over the pixels of the input only: at the borders the window is cut and the mean is over the pixels it
    still holds (count-normalised, no padding value enters), so flips and 90-degree rotations commute with it."""
    if k <= 1:
        return x
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def spectral_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W) for k = 0 (the bands), (B, 2C, H, W) otherwise: [bands, box_mean_k(bands)]."""
    return x if k == 0 else torch.cat([x, box_mean(x, k)], 1)
