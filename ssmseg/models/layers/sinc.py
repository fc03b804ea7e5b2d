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

    def __init__(
        self,
        n_filters: int = 16,
        kernel_size: int = 15,
        positions: int = 4,
        min_band: float = 0.01,
        samples: int | None = None,
    ) -> None:
        super().__init__()
        self.samples = samples  # bands per position where the RMS is sampled; None: every band
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

    def band_matrix(self, bands: int) -> torch.Tensor:
        """(n_filters, bands, bands): filtering each spectrum ("same" zero padding) as one matrix, so the bank
        runs as a 1x1 convolution over the band channels (one matmul, fast forward and backward)."""
        k, half = self.kernels()[:, 0], self.kernel_size // 2
        c = torch.arange(bands, device=k.device)
        offset = c[None, :] - c[:, None] + half  # [out, in] -> tap index
        valid = (offset >= 0) & (offset < self.kernel_size)
        return k[:, offset.clamp(0, self.kernel_size - 1)] * valid

    def pool_matrix(self, bands: int, device: torch.device) -> torch.Tensor:
        """(positions, bands) averaging over contiguous segments of the band axis (adaptive average pooling)."""
        m = torch.zeros(self.positions, bands, device=device)
        for p in range(self.positions):
            lo, hi = (p * bands) // self.positions, -(-((p + 1) * bands) // self.positions)
            m[p, lo:hi] = 1.0 / (hi - lo)
        return m

    def sample_rows(self, bands: int) -> torch.Tensor | None:
        """(positions, samples) bands at which the RMS of each position is taken: evenly spaced inside its
        segment; None when every band is used (``samples`` unset, or segments no longer than it)."""
        if self.samples is None or bands <= self.samples * self.positions:
            return None
        rows = []
        for p in range(self.positions):
            lo, hi = (p * bands) // self.positions, -(-((p + 1) * bands) // self.positions)
            rows.append(torch.linspace(lo, hi - 1, self.samples).round().long())
        return torch.stack(rows)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, bands, H, W) -> the signed means as a matrix on the bands, (n_filters * positions, bands) (they
        are linear in the spectrum), and the RMS maps, (B, n_filters * positions, H, W). A caller that applies
        a linear map next (SSMU-Net's embedding) folds the matrix into its own weights: no means tensor."""
        b, c, h, w = x.shape
        c = int(c)  # a constant when traced for export: the band count is fixed, so are the kernels' shapes
        n_f = self.low.shape[0]
        bank = self.band_matrix(c).to(x.dtype)  # (F, C, C)
        pool = self.pool_matrix(c, x.device).to(x.dtype)  # (P, C)
        mean = (pool @ bank).reshape(n_f * self.positions, c)  # pooling is linear: fold it in
        rows = self.sample_rows(c)
        if rows is not None:  # the filtered spectrum at a few bands per position: a cost that does not grow with C
            sub = bank[:, rows.reshape(-1).to(x.device)]  # (F, P * samples, C)
            filtered = F.conv2d(x, sub.reshape(-1, c, 1, 1)).reshape(b, n_f * self.positions, self.samples, h, w)
            return mean, rms(filtered)
        filtered = F.conv2d(x, bank.reshape(n_f * c, c, 1, 1)).reshape(b, n_f, c, h * w)
        energy = torch.einsum("pc,bfcl->bfpl", pool, filtered.square())
        return mean, energy.add(1e-6).sqrt().reshape(b, n_f * self.positions, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, rms_maps = self.parts(x)
        return torch.cat([F.conv2d(x, mean[:, :, None, None]), rms_maps], dim=1)


class _RootMeanSquare(torch.autograd.Function):
    """sqrt(mean(f^2, dim 2) + 1e-6) of (B, G, S, H, W) with a backward in one pass over f (autograd's chain of
    square, mean, add and sqrt writes three f-sized tensors)."""

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        r = f.square().mean(2).add_(1e-6).sqrt_()
        ctx.save_for_backward(f, r)
        return r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        f, r = ctx.saved_tensors
        return f * (grad / (r * f.shape[2])).unsqueeze(2)


def rms(f: torch.Tensor) -> torch.Tensor:
    """(B, G, S, H, W) -> (B, G, H, W): sqrt(mean over S of f^2 + 1e-6)."""
    if torch.is_grad_enabled() and f.requires_grad and not torch.jit.is_tracing():
        return _RootMeanSquare.apply(f)
    return f.square().mean(2).add(1e-6).sqrt()
