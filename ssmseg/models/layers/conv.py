"""Convolution blocks, up-sampling, the residual SS2D block and its scan-free twin for ablations."""

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
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            norm(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            norm(cout),
            nn.GELU(),
        )


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


class GatedConv(nn.Module):
    """SS2D without the scan: in_proj to (x, z), depthwise convolution and SiLU on x, x * silu(z), out_proj.
    Local context only, with SS2D's projections: what an ablation of the selective scan keeps."""

    def __init__(self, d_model: int, expand: int = 2, d_conv: int = 3) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.in_proj = nn.Conv2d(d_model, 2 * d_inner, 1, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner)
        self.out_proj = nn.Conv2d(d_inner, d_model, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xi, z = self.in_proj(x).chunk(2, dim=1)
        return self.out_proj(F.silu(self.conv2d(xi)) * F.silu(z))


class ConvMixBlock(nn.Module):
    """``SS2DBlock`` with ``GatedConv`` in place of SS2D (``model.ss2d: false``): same norms and MLP."""

    def __init__(self, channels: int, expand: int = 2, mlp_ratio: float = 2.0, d_conv: int = 3) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.mix = GatedConv(channels, expand, d_conv)
        self.norm2 = nn.GroupNorm(1, channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def context_block(channels: int, d_state: int, expand: int, d_conv: int, ss2d: bool) -> nn.Module:
    """The SS2D block of a stage, or its scan-free twin when ``ss2d`` is off."""
    return (
        SS2DBlock(channels, d_state, expand, d_conv=d_conv) if ss2d else ConvMixBlock(channels, expand, d_conv=d_conv)
    )


class Up(nn.Module):
    """Bilinear up-sampling to the skip's size, concatenation, ConvBlock."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.block = ConvBlock(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))
