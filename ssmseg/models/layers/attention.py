"""Attention modules: multi-scale attention (three dilations) and window self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleAttention(nn.Module):
    """Gates features with an attention map built from three scales (dilated depthwise convolutions
    1, 2, 3) and a channel squeeze-excitation. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=d, dilation=d, groups=channels) for d in (1, 2, 3)
        )
        self.fuse = nn.Conv2d(3 * channels, channels, 1)
        hidden = max(4, channels // 4)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.fuse(torch.cat([s(x) for s in self.scales], dim=1))
        return x + x * torch.sigmoid(spatial + self.se(x))


class WindowAttention(nn.Module):
    """Pre-norm multi-head self-attention inside non-overlapping windows, residual. (B, C, H, W)."""

    def __init__(self, channels: int, window: int = 8, heads: int = 4) -> None:
        super().__init__()
        heads = max(1, min(heads, channels // 8)) if channels >= 8 else 1
        self.window, self.norm = window, nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.window
        ph, pw = (-h) % s, (-w) % s
        y = F.pad(x, (0, pw, 0, ph)).permute(0, 2, 3, 1)  # (B, H', W', C)
        hh, ww = y.shape[1] // s, y.shape[2] // s
        tokens = y.reshape(b, hh, s, ww, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b * hh * ww, s * s, c)
        normed = self.norm(tokens)
        out, _ = self.attn(normed, normed, normed, need_weights=False)
        out = out.reshape(b, hh, ww, s, s, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hh * s, ww * s)
        return x + out[..., :h, :w]
