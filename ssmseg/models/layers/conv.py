"""Convolution blocks, up-sampling, and the residual SS2D block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.ssm.ss2d import SS2D


def norm(channels: int) -> nn.Module:
    """GroupNorm: independent of the batch size, so DDP shards and batch-1 inference behave alike."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions with norm and GELU: (B, cin, H, W) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), norm(cout), nn.GELU(),
        )  # fmt: skip


class ResBlock(nn.Module):
    """Basic residual block (ResNet-18 style), optional stride."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = norm(cout)
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.n1(self.conv1(x)))
        return F.gelu(self.n2(self.conv2(y)) + self.skip(x))


class SS2DBlock(nn.Module):
    """x + SS2D(LayerNorm(x)), then x + MLP(LayerNorm(x)): a VMamba-style block on (B, C, H, W)."""

    def __init__(
        self, channels: int, d_state: int = 16, expand: int = 2, mlp_ratio: float = 2.0, d_conv: int = 3
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.ssm = SS2D(channels, d_state=d_state, expand=expand, d_conv=d_conv)
        self.norm2 = nn.GroupNorm(1, channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ssm(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Up(nn.Module):
    """Bilinear up-sampling to the skip's size, concatenation, ConvBlock."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.block = ConvBlock(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))
