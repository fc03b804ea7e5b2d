"""Learnable sinc band-pass filters over the spectral axis (SincNet's parameterisation, per pixel).

Each filter is a band-pass with a learnable low cutoff and bandwidth in normalised frequency (cycles per
band), built as the difference of two windowed sincs; the cutoffs are initialised to tile [0, 0.5]. The
spectrum of every pixel is filtered, then summarised at a few positions along the band axis by its signed
mean (what low-pass filters carry) and its RMS (the energy of oscillating band-pass responses), so the
output keeps where in the spectrum each kind of feature occurs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SincBandFilters(nn.Module):
    """(B, bands, H, W) -> (B, 2 * n_filters * positions, H, W)."""

    def __init__(self, n_filters: int = 16, kernel_size: int = 15, positions: int = 4, min_band: float = 0.01) -> None:
        super().__init__()
        self.kernel_size = kernel_size | 1  # odd, so the output keeps the band count
        self.positions = positions
        self.min_band = min_band
        edges = torch.linspace(0.0, 0.5, n_filters + 1)
        self.low = nn.Parameter(edges[:-1].clone())  # low cutoffs, tiling [0, 0.5)
        self.band = nn.Parameter((edges[1:] - edges[:-1]).clone())  # bandwidths
        half = self.kernel_size // 2
        self.register_buffer("n", torch.arange(-half, half + 1, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hamming_window(self.kernel_size, periodic=False), persistent=False)
        self.out_channels = 2 * n_filters * positions

    def cutoffs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) cutoffs per filter, kept ordered inside [0, 0.5]."""
        low = self.low.abs().clamp(max=0.5 - self.min_band)
        high = (low + self.min_band + self.band.abs()).clamp(max=0.5)
        return low, high

    def kernels(self) -> torch.Tensor:
        """(n_filters, 1, kernel_size) band-pass impulse responses, unit peak gain."""
        low, high = self.cutoffs()
        n = self.n[None, :]

        def lowpass(f: torch.Tensor) -> torch.Tensor:  # 2 f sinc(2 pi f n), with its limit 2 f where arg = 0
            arg = 2 * math.pi * f[:, None] * n
            zero = arg.abs() < 1e-8
            safe = torch.where(zero, torch.ones_like(arg), arg)  # no 0/0 even in the branch not taken
            return 2 * f[:, None] * torch.where(zero, torch.ones_like(arg), torch.sin(safe) / safe)

        k = (lowpass(high) - lowpass(low)) * self.window
        return (k / (k.abs().sum(1, keepdim=True) + 1e-6)).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spectra = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        filtered = F.conv1d(spectra, self.kernels(), padding=self.kernel_size // 2)  # (BHW, F, C)
        mean = F.adaptive_avg_pool1d(filtered, self.positions)  # (BHW, F, P)
        rms = F.adaptive_avg_pool1d(filtered.square(), self.positions).add(1e-6).sqrt()
        return torch.cat([mean, rms], dim=1).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
