"""Wavelet convolution: a fixed 2D wavelet transform (Haar or Daubechies-2), a learned depthwise
convolution on each sub-band, the inverse transform, plus a plain depthwise path. Enlarges the receptive
field at little cost. (B, C, H, W) -> (B, C, H, W)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LOW = {
    "haar": [1 / math.sqrt(2), 1 / math.sqrt(2)],
    "db2": [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025],
}


def wavelet_filters(name: str) -> torch.Tensor:
    """(4, k, k) analysis filters LL, LH, HL, HH of an orthogonal wavelet."""
    if name not in _LOW:
        raise ValueError(f"unknown wavelet '{name}'; choose one of {', '.join(_LOW)}")
    lo = torch.tensor(_LOW[name][::-1], dtype=torch.float32)
    hi = torch.tensor([(-1) ** i * c for i, c in enumerate(_LOW[name])], dtype=torch.float32)
    return torch.stack([torch.outer(a, b) for a in (lo, hi) for b in (lo, hi)])


class WaveletConv(nn.Module):
    def __init__(self, channels: int, wavelet: str = "haar", kernel_size: int = 3) -> None:
        super().__init__()
        filt = wavelet_filters(wavelet)
        self.k = filt.shape[-1]
        self.register_buffer("filters", filt.repeat(channels, 1, 1).unsqueeze(1), persistent=False)  # (4C, 1, k, k)
        self.channels = channels
        self.sub = nn.Conv2d(4 * channels, 4 * channels, kernel_size, padding=kernel_size // 2, groups=4 * channels)
        self.base = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        nn.init.zeros_(self.sub.weight)  # starts as the plain depthwise path
        nn.init.zeros_(self.sub.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad = self.k - 2
        # Even size, and periodic padding so the orthogonal transform inverts exactly.
        xe = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        xp = F.pad(xe, (pad, pad, pad, pad), mode="circular") if pad else xe
        bands = F.conv2d(xp, self.filters, stride=2, groups=self.channels)  # (B, 4C, H/2, W/2)
        bands = bands + self.sub(bands)
        rec = F.conv_transpose2d(bands, self.filters, stride=2, groups=self.channels)
        if pad:
            rec = rec[..., pad : pad + xe.shape[-2], pad : pad + xe.shape[-1]]
            rec = rec.clone()
        return rec[..., :h, :w] + self.base(x)
