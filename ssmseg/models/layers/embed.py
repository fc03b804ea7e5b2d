"""Embeddings of time and position for the field models: sinusoidal time + MLP, learnable Fourier features."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(
    t: torch.Tensor, dim: int, max_period: float = 10_000.0, scale: float = 1000.0
) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim): cos and sin of ``scale * t`` at frequencies from 1 down to 1/max_period."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class TimeEmbedding(nn.Module):
    """t (B,) -> (B, dim): sinusoidal features through a two-layer MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))


class FourierFeatures(nn.Module):
    """Coordinates (..., 2) in [0, 1]^2 -> (..., out_dim) through sin and cos of 2 pi <f_k, x>.

    The ``n_fourier`` frequencies f_k are learned (initialised ~ N(0, scale^2) cycles per unit), so the model
    can move them to the scales the data has instead of living with a fixed random draw.
    """

    def __init__(self, n_fourier: int, scale: float, out_dim: int) -> None:
        super().__init__()
        self.freqs = nn.Parameter(torch.randn(2, n_fourier) * scale)
        self.freqs._no_weight_decay = True  # type: ignore[attr-defined]
        self.proj = nn.Linear(2 * n_fourier + 2, out_dim)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * coords.float() @ self.freqs
        # The raw coordinates go in too: a smooth, always-available position beside the oscillating features.
        return self.proj(torch.cat([torch.sin(phase), torch.cos(phase), coords.float() * 2 - 1], dim=-1))
